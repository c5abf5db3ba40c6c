"""What every part of the project agrees an MNIST digit is: its picture size and its classes."""

IMAGE_SHAPE = (28, 28)  # rows, columns
N_CLASSES = 10  # the digits 0-9
