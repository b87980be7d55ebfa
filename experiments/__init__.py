"""The paper's experiments as one-command runs.

One config module per experiment, each with ``get_config(...) -> Experiment``
and its run command in the docstring; ``small=True`` shrinks it to a smoke run
on scikit-learn's digits. ``python -m experiments.run NAME`` runs one (every
finished (method, seed) unit is kept and skipped on a rerun), ``python -m
experiments.report WORKDIR`` rebuilds its tables and figures from the
finished units, ``python -m experiments.compare A B`` sets two runs side by
side.

=====================  =====================================================
``class_removal``      Figure 2: every method, forget/remain curves (16 pairs)
``fashion_offline``    the same pipeline on real Fashion-MNIST, CPU-sized
``mask_only``          Table 1: accuracy right after the edit, no fine-tuning
``outliers``           Table 2: outlier deletion at 10/30/50% noise
``limited_remain``     Figure 3: forget data only, and 50 remain examples
``ratio_sweep``        Figure 4: FisherMask, mask ratios 0 to 0.12
``lr_ablation``        Figure 5: constant learning rates vs the compressed one
``successors``         the paper's method and SSD, SalUn, SCRUB, l1-sparse,
                       NegGrad+, random labels under the protocol, on a CPU
``salun_recipe``       SalUn's CIFAR-10 protocol index for index (a GPU)
``privacy``            per-example forgetting quality from ensembles, on a CPU
``privacy_cifar10``    the same on CIFAR-10, 128 models per method (a GPU)
=====================  =====================================================
"""

EXPERIMENTS = ("class_removal", "fashion_offline", "mask_only", "outliers", "limited_remain",
               "ratio_sweep", "lr_ablation", "successors", "salun_recipe", "privacy",
               "privacy_cifar10")
