"""Eye state (open / closed) read from the pixels of each eye, for the driver monitor.

``crop`` frames a 24 x 24 grey eye crop from landmarks (as the CEW eye images are framed), ``model`` runs the
tiny ONNX network (``landmark/weights/eye_state.onnx``), ``data`` reads CEW-layout folders and splits them by
face, ``metrics`` scores it, ``faces`` checks open-eyed photos through the whole pipeline; ``train`` (PyTorch,
``landmark train-eyes``) trains and exports it. Everything but ``train`` needs only ONNX Runtime, OpenCV and
NumPy. ``landmark.dms.monitor`` documents how the closed probability is fused with EAR.
"""
