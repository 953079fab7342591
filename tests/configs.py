"""Gin configs the tests share: small experiments on generated data.

Each starts from CLASSIFIER (the synthetic dataset, cross-entropy, Adam) and adds what it
varies; gin lets a later binding replace an earlier one, so a test appends its own.
"""

CLASSIFIER = """
Experiment.dataset = @datasets.synthetic
Experiment.loss = @losses.sparse_categorical_crossentropy
Experiment.optimizer = @optimizers.adam
"""

# Learns to > 90% eval accuracy in its 60 steps; cadences that cut the host loops.
SYNTHETIC_MLP = CLASSIFIER + """
Experiment.model = @models.mlp
Experiment.batch_size = 32
Experiment.train_steps = 60
Experiment.steps_per_loop = 7
Experiment.summary_every = 20
Experiment.eval_every = 30
Experiment.checkpoint_every = 30
datasets.synthetic.train_size = 256
datasets.synthetic.eval_size = 64
models.mlp.hidden_units = (32,)
"""

SMALL_CNN = CLASSIFIER + """
Experiment.model = @models.cnn
Experiment.batch_size = 32
models.cnn.filters = 8
models.cnn.dense_units = 32
datasets.synthetic.train_size = 512
datasets.synthetic.eval_size = 128
"""

TINY_CNN = CLASSIFIER + """
Experiment.model = @models.cnn
Experiment.optimizer = @optimizers.sgd
optimizers.sgd.learning_rate = 0.05
Experiment.batch_size = 16
Experiment.train_steps = 6
Experiment.steps_per_loop = 3
datasets.synthetic.input_shape = (10, 10, 1)
datasets.synthetic.train_size = 96
datasets.synthetic.eval_size = 32
models.cnn.filters = 4
models.cnn.dense_units = 8
"""

MIRRORED = """
Experiment.strategy = @strategies.mirrored
strategies.mirrored.logical_cpus = 2
"""
