"""The Cutie family (hkchengrex/Cutie, Cheng et al., CVPR 2024): work in progress.

- :mod:`.network`: the ``Cutie`` network with named stages (base: ResNet-50 pixel encoder; small: ResNet-18), with
  the official state_dict layout (527 / 359 entries);
- :mod:`.blocks` and :mod:`.transformer`: its building blocks, object transformer and object summarizer.

Not yet in the family table (``corrvos.families.NAMES``): its inference memory (pixel working and long-term memory,
sensory and object memory) and its table entry come next.
"""
