"""Hyperparameter search over any gin parameter with Optuna: `python -m framework.search`.

  settings  the `Search` gin configurable (the space, objective, sampler, pruner)
  space     checks it against the experiment; Optuna distributions, samplers, pruners
  storage   where the study lives (a journal file in the study folder, or a database)
  study     opening, counting, and retrying the trials of a dead process
  trial     one trial: an ordinary run in study_dir/trial_NNNN, reporting to Optuna
  results   trials.csv, best.gin, the table, TensorBoard's HParams domains
  workers   threads that start trial processes until the study has its count
  __main__  the command
"""
