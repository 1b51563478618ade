"""Which parts of a task FSDP2 shards across processes (`trainer=fsdp`, `vitadapter.run.fsdp`).

Every block of the frozen ViT is a unit of its own: its weights live sharded, 1/N on each of the N processes, and
are gathered for the block's forward only, so a trunk larger than one GPU runs one block at a time. Each top-level
part of the task that holds tensors (the encoder, with the ViT's embedding, the method and the neck; each head; a
detector) is a unit too: their gradients are reduced across the processes as DDP would, and their optimiser state
is sharded. FSDP2 (`torch.distributed.fsdp.fully_shard`) shards per parameter, so a unit may mix bfloat16 frozen
matrices with float32 trained tensors (FSDP1 flattens a unit into one tensor of one dtype).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, fully_shard

if TYPE_CHECKING:
    from vitadapter.tasks.base import FrozenBackboneTask


def fsdp_units(task: FrozenBackboneTask) -> list[nn.Module]:
    """The modules sharded as units, innermost first: the ViT's blocks, then the task's parts that hold tensors.

    The parts are each called as modules by the task's steps (so FSDP2's forward hooks gather them); the task itself
    is not a unit, since Lightning calls its `training_step`, not its `forward`.
    """
    parts = [child for child in task.children() if next(child.parameters(), None) is not None]
    return [*task.backbone.vit.blocks, *parts]


def shard_task(task: FrozenBackboneTask, mesh: DeviceMesh) -> None:
    """Shards `task` across the processes of `mesh` (a 1-D data-parallel mesh), in place; once only.

    The frozen set is kept: FSDP2 replaces each parameter by a sharded one of the same name, which the backbone then
    tracks instead (checkpoints still leave the frozen weights out).
    """
    if any(isinstance(module, FSDPModule) for module in task.modules()):
        return  # Lightning calls configure_model at every entry (fit, then validate)
    before = dict(task.backbone.vit.named_parameters())
    for unit in fsdp_units(task):
        # every unit, the top-level ones too, reshards after its forward: evaluation has no backward to do it
        fully_shard(unit, mesh=mesh, reshard_after_forward=True)
    task.backbone.track_replaced_parameters(before)
