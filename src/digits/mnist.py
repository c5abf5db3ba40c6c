"""What every part of the project agrees an MNIST digit is: its picture size and its classes."""

IMAGE_SHAPE = (28, 28)  # rows, columns
N_CLASSES = 10  # the digits 0-9
# In train-images-idx3-ubyte: validation_fraction splits these, and a batch larger than the
# training split is that whole split (Keras takes it as one short batch an epoch).
MNIST_TRAIN_IMAGES = 60_000
