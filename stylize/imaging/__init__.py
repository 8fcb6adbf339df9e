"""Pixels in and out of the style network, one module a stage.

Pure numpy + Pillow; no Django but its lazy translations of the messages for a photo's
owner. A photo goes through them in this order:

- ``loading``: what decoding a photo costs, the photo as an upright RGB array
  (``load_photo``), a stored photo written anew without its metadata
  (``photo_without_metadata``), and the formats the worker reads.
- ``tiling``: the network run over a photo in overlapping tiles (``stylize_tiled``).
- ``stroke_size``: the size the network paints at for a stroke (``size_plan``), and
  the painting at that size brought back to the photo's (``stylize_at_working_size``,
  ``guided_upsample``).
- ``postprocessing``: the photo's colours kept (``colors_kept``); strength is the
  network's.
- ``encoding``: results as JPEG, PNG or WebP bytes (``encode_image``), thumbnails.

``pixels`` holds what they share: the array convention, the model's ``run`` and the
fitted size. Import each name from the module that holds it; this package re-exports
nothing.
"""
