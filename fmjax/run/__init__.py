"""Unlearning runs, by job: one module each, below the public :mod:`fmjax.unlearning`.

* :mod:`fmjax.run.config` -- :class:`UnlearnConfig`, the paper's defaults.
* :mod:`fmjax.run.build` -- the task, epochs, procedure and checks; the shared context.
* :mod:`fmjax.run.phases` -- edit, resume, fine-tuning (alone or stacked), relearn, finish.
* :mod:`fmjax.run.drivers` -- :func:`unlearn` and :func:`unlearn_many`.
* :mod:`fmjax.run.summary` -- headline numbers and one-line forms.
"""
