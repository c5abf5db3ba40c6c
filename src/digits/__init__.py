"""digits: a reproducible DVC pipeline that trains a dense Keras network on MNIST, and the
``digits`` command around it. The stage scripts in ``stages/`` and the commands import these
modules; TensorFlow is imported only by the ones that train or run the model (``model``,
``batches``, ``dropout``, ``optimizer``, ``augment``, ``saving``), and only when needed.
"""
