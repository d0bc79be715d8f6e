"""corrvos.training: everything ``corrvos train`` runs.

- :mod:`~corrvos.training.unroll`: ``ClipUnroller`` (the one module DDP wraps; ``forward(batch) -> ClipOutputs``);
- :mod:`~corrvos.training.task`: ``CorrespondenceTask`` (unroller + losses -> dict(loss, terms, outputs));
- :mod:`~corrvos.training.trainer`: ``Trainer`` (optimiser, lr schedule, AMP, clipping, finite-loss check, stages);
- :mod:`~corrvos.training.hooks`: TensorBoard, progress bar and checkpoints (rank 0 only);
- :mod:`~corrvos.training.data`: stage datasets and the step-indexed sampler (deterministic, resumable);
- :mod:`~corrvos.training.schedules`, :mod:`~corrvos.training.checkpoint`, :mod:`~corrvos.training.distributed`.

Submodules are imported explicitly (``from corrvos.training.trainer import Trainer``) so that importing the
package stays cheap.
"""
