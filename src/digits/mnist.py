"""What every part of the project agrees about its data: an MNIST digit's picture size and
classes, how many the training file holds, and how many pictures a model scores per call."""

IMAGE_SHAPE = (28, 28)  # rows, columns
N_CLASSES = 10  # the digits 0-9
# In train-images-idx3-ubyte: validation_fraction splits these, and a batch larger than the
# training split is that whole split (Keras takes it as one short batch an epoch).
MNIST_TRAIN_IMAGES = 60_000
INFERENCE_BATCH = 1000  # pictures per call when only scoring: faster than small ones, same result
