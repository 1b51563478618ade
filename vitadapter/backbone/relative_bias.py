"""BEiT's relative-position bias for any patch grid, resampled from its table the way timm resamples it.

timm builds each BEiT table for one window (the model's image size) and resizes it only when a
checkpoint is loaded into a model built for another size (`checkpoint_filter_fn` calls
`resize_rel_pos_bias_table`). The encoder keeps one model for every input size, so it resamples the
table for each input's grid with that same function. timm's resampler interpolates head by head on
the CPU and is slow (about a second per table for a 32x43 grid on a laptop CPU), so resampled tables
are cached. A cached table is reused only for the very tensor it came from and only while that
tensor is unchanged: same storage and in-place version counter (an optimiser step or
`load_state_dict` bumps it) and, for a table that trains, the same values (fused optimisers and
writes through `.data` leave the version counter alone). A table that needs a gradient is resampled
afresh in every forward that records gradients, so a bias computed without gradients never reaches
a training step.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table
from timm.models.beit import gen_relative_position_index
from torch import Tensor

Grid = tuple[int, int]

# index tensors kept (one per grid and device): (h·w+1)² longs each, shared by every table
_CACHED_INDICES = 4


def resampled_table(table: Tensor, window: Grid, grid: Grid) -> Tensor:
    """A BEiT table ((2h-1)(2w-1)+3 rows × heads) built for `window`, resampled to `grid` by timm.

    The table itself when `grid` is `window`; differentiable otherwise.
    """
    rows = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
    return resize_rel_pos_bias_table(
        table, new_window_size=grid, new_bias_shape=(rows, table.shape[-1]), old_window_size=window
    )


def expand_table(table: Tensor, index: Tensor, grid: Grid) -> Tensor:
    """A table for `grid` read at every token pair: heads × (h·w+1) × (h·w+1), class token first (as timm)."""
    area = grid[0] * grid[1] + 1
    return table[index.view(-1)].view(area, area, -1).permute(2, 0, 1).contiguous()


@dataclass
class _Resampled:
    """A resampled table and what identifies the tensor state it was computed from."""

    source: weakref.ref
    version: int
    data_ptr: int
    device: torch.device
    dtype: torch.dtype
    snapshot: Tensor | None  # a copy of a trainable table's values
    table: Tensor

    def fits(self, table: Tensor) -> bool:
        """Whether this was computed from `table` as it is now."""
        if (self.source() is not table or self.version != table._version or self.data_ptr != table.data_ptr()
                or self.device != table.device or self.dtype != table.dtype):
            return False
        if table.requires_grad:
            return self.snapshot is not None and torch.equal(self.snapshot, table)
        return True


class RelativeBiasResampler:
    """Relative-position biases of BEiT tables for any grid, with the cache described in the module docstring.

    Args:
        capacity: resampled tables kept (least recently used dropped first); give room for a few
            grids of every table of the model.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._tables: OrderedDict[tuple[int, Grid], _Resampled] = OrderedDict()
        self._indices: OrderedDict[tuple[Grid, torch.device], Tensor] = OrderedDict()

    def for_grid(self, table: Tensor, window: Grid, grid: Grid) -> Tensor:
        """The bias heads × (h·w+1) × (h·w+1) of `table` (built for `window`) on a `grid` of patches.

        Args:
            table: a BEiT `relative_position_bias_table`.
            window: the grid the table was built for (its module's `window_size`).
            grid: (h, w) of the patch tokens the bias is for.
        """
        if table.requires_grad and torch.is_grad_enabled():
            resized = resampled_table(table, window, grid)
        else:
            resized = self._cached_table(table, window, grid)
        return expand_table(resized, self._index(grid, table.device), grid)

    def _cached_table(self, table: Tensor, window: Grid, grid: Grid) -> Tensor:
        key = (id(table), grid)
        entry = self._tables.get(key)
        if entry is None or not entry.fits(table):
            with torch.no_grad():
                resized = resampled_table(table, window, grid)
                entry = _Resampled(
                    weakref.ref(table), table._version, table.data_ptr(), table.device, table.dtype,
                    table.detach().clone() if table.requires_grad else None, resized.detach(),
                )
            self._tables[key] = entry
            while len(self._tables) > self.capacity:
                self._tables.popitem(last=False)
        self._tables.move_to_end(key)
        return entry.table

    def _index(self, grid: Grid, device: torch.device) -> Tensor:
        key = (grid, device)
        if key not in self._indices:
            self._indices[key] = gen_relative_position_index(grid, device=device)
            while len(self._indices) > _CACHED_INDICES:
                self._indices.popitem(last=False)
        self._indices.move_to_end(key)
        return self._indices[key]
