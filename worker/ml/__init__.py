"""Pure ML code for Sneakers: image decoding, background removal, embeddings, heads, search, training.

Nothing in this package imports Django. The modules ``images``, ``errors`` and ``results`` import only
the standard library, NumPy and Pillow, so the web process may use them for upload validation without
loading TensorFlow, onnxruntime or OpenCV. The other modules import those libraries lazily, inside the
functions and constructors that need them.
"""
