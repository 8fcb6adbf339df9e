"""Colour constants shared by training, the quality measure and the web's imaging.

Light on purpose (no NumPy, no TensorFlow): ``stylize/imaging.py`` imports it in the web
process.
"""

#: Luminance from RGB: ITU-R BT.601, as JPEG's full-range YCbCr takes it.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
