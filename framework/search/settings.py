"""The `Search` gin configurable: what a search config binds (framework.search.space
checks it). Kept free of Optuna so that framework.main, which registers it, can run a
search config's experiment alone (`--gin_file=gin/search_cnn.gin` trains its base
settings) without importing Optuna.
"""

import gin


@gin.configurable
class Search:
    """What a study searches and for what (the parsed `Search.*` bindings; see the module
    docstring for `parameters`).

    objective: the eval metric to optimise, as the evaluation reports it ('accuracy',
      'loss', 'accuracy/all_heads' for a multi-head model).
    direction: 'maximize' or 'minimize'.
    trials: how many trials the study runs to the end (complete, pruned or failed); an
      interrupted trial is retried and does not count. --trials overrides it.
    sampler: 'tpe' (Optuna's default), 'random', or 'grid' (every combination of
      'choices' and stepped 'int' ranges, in a seeded order).
    pruner: 'hyperband', 'successive_halving', 'median' or 'none'. Budgets are train steps:
      a trial is judged at its evaluations (Experiment.eval_every), and the smallest
      budget is `min_steps` (default: eval_every).
    reduction_factor: Hyperband's and successive halving's: 1/reduction_factor of the
      trials go on at each rung.
    seed: seeds the sampler; None: Experiment.seed. Every trial trains with
      Experiment.seed, so trials differ by their parameters only.
    first_trials: parameter sets to try before the sampler's own, e.g. the experiment's
      current values: [{'models.cnn.filters': 64, ...}]; a parameter left out is drawn.
    """

    def __init__(self, parameters=gin.REQUIRED, objective="accuracy", direction="maximize",
                 trials=20, sampler="tpe", pruner="hyperband", min_steps=None,
                 reduction_factor=3, seed=None, first_trials=()):
        self.parameters, self.objective, self.direction = parameters, objective, direction
        self.trials, self.sampler, self.pruner = trials, sampler, pruner
        self.min_steps, self.reduction_factor, self.seed = min_steps, reduction_factor, seed
        self.first_trials = first_trials


def declared() -> bool:
    """Whether the parsed gin config binds any Search.* setting."""
    return any(line.startswith("Search.") for line in gin.config_str().splitlines())
