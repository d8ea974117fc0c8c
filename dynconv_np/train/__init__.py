"""Training: softmax cross-entropy, SGD, learning-rate and temperature schedules, the training
loop, checkpoints, and the datasets (embedded digits, MNIST/Fashion-MNIST, CIFAR-10)."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import DataFileError, Dataset, load_cifar10, load_dataset, load_digits, load_mnist
from .loop import History, TrainConfig, evaluate, fit, train_step
from .losses import accuracy, cross_entropy_backward, cross_entropy_forward
from .optim import SGD
from .progress import ProgressBar
from .schedules import CosineWarmupLR, TemperatureAnnealing, apply_temperature
