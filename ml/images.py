"""What every part that reads or measures pictures shares: which files are images, and
luminance.

Light on purpose (no NumPy, no TensorFlow): the web process imports it too.
"""

#: The files read as images in a folder of photos or results (Pillow reads them all), in
#: the order a result is looked for beside its photo's name (``ml.quality``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Those training reads as photos: the ones TensorFlow's ``decode_image`` reads too.
TRAINING_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: Luminance from RGB: ITU-R BT.601, as JPEG's full-range YCbCr takes it.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
