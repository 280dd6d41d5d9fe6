"""CFPN (FPN with CARAFE top-down upsampling) and the stride-4 P2 feature of the HD head.

Two CARAFE FPNs: `CFPN` (the default) has FPN's topology, TOOD's, so a TOOD checkpoint
starts it where TOOD is; `CARAFEFPN` is mmdet's FPN_CARAFE (extra levels from C5, merged
top-down into P5). Both load another neck's checkpoint by roles (`load_neck_by_roles`).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmcv.ops.carafe import CARAFEPack
from mmdet.models.necks import FPN, FPN_CARAFE
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule, xavier_init
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import Tensor

from afmcli.errors import AfmError

from .carafe import CARAFEUpsample
from .windows import Windows, crop_windows, gather_windows

TOPOLOGIES = {'FPN': "mmdet's FPN (TOOD's neck: nearest top-down, extra levels by stride-2 convs on the outputs)",
              'CFPN': 'FPN with CARAFE top-down upsampling (afmcli CFPN)',
              'FPN_CARAFE': "mmdet's FPN_CARAFE (extra levels from C5, merged top-down into P5; afmcli CARAFEFPN)"}
NECK_TYPES = {'FPN': 'FPN', 'CFPN': 'CFPN', 'FPN_CARAFE': 'CARAFEFPN'}


def neck_roles(topology: str, levels: int, num_outs: int) -> dict[str, str]:
    """{module name: role} in a neck of `topology` (a key of TOPOLOGIES) with `levels` input
    levels and `num_outs` outputs. Two modules of different necks share a role when they do
    the same job on the same level: only then does a weight move from one to the other."""
    roles = {}
    for i in range(levels):
        roles[f'lateral_convs.{i}'] = f'1x1 lateral of input level {i}'
        roles[f'fpn_convs.{i}'] = f'3x3 output conv of level {i}'
    for i in range(levels, num_outs):
        if topology == 'FPN_CARAFE':
            roles[f'lateral_convs.{i}'] = f'stride-2 conv making extra level {i} from the level below'
            roles[f'fpn_convs.{i}'] = f'3x3 output conv of extra level {i} after its top-down merge'
        else:
            roles[f'fpn_convs.{i}'] = f'stride-2 conv making extra level {i} from the output below'
    upsamplers = dict(FPN=0, CFPN=levels - 1, FPN_CARAFE=num_outs - 1)[topology]
    for i in range(upsamplers):
        roles[f'upsample_modules.{i}'] = f'CARAFE upsampling level {i + 1} to level {i}'
    return roles


def checkpoint_topology(modules: set[str], levels: int) -> str:
    """The topology of a checkpoint's neck from its module names: laterals beyond the input
    levels are FPN_CARAFE's, upsampler weights without them CFPN's, neither FPN's."""
    laterals = {m for m in modules if m.startswith('lateral_convs.')}
    if len(laterals) > levels:
        return 'FPN_CARAFE'
    return 'CFPN' if any(m.startswith('upsample_modules.') for m in modules) else 'FPN'


def load_neck_by_roles(neck: nn.Module, state_dict: dict, prefix: str, topology: str,
                       accepts: Sequence[str]) -> None:
    """Rewrite the neck's entries of `state_dict` (in place, before they load) from the
    checkpoint's topology to `topology` by the explicit role map of `neck_roles`: every weight
    moves to the module with its role, whatever it is named. A module whose role this neck has
    not (FPN's P6/P7 convs in FPN_CARAFE) is left out, with a warning. Refused with one line
    (AfmError): a checkpoint of a topology not in `accepts`, a module of no known role, and a
    weight whose role here has another shape."""
    names = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
    if not names:
        return
    levels = neck.backbone_end_level - neck.start_level
    modules = {'.'.join(n.split('.')[:2]) for n in names}
    source = checkpoint_topology(modules, levels)
    if source not in accepts:
        raise AfmError(f"checkpoint's neck is {TOPOLOGIES[source]}, this model's is {TOPOLOGIES[topology]}: its "
                       f"weights have other roles here; load it into neck type {NECK_TYPES[source]} "
                       "or train this neck from scratch")
    source_outs = 1 + max(int(m.split('.')[1]) for m in modules if m.startswith(('fpn_convs.', 'lateral_convs.')))
    theirs = neck_roles(source, levels, max(source_outs, levels))
    ours = {role: module for module, role in neck_roles(topology, levels, neck.num_outs).items()}
    own = neck.state_dict()
    moved, left_out = {}, set()
    for name in names:
        module, rest = '.'.join(name.split('.')[:2]), '.'.join(name.split('.')[2:])
        if module not in theirs:
            raise AfmError(f"checkpoint key {prefix}{name}: no such module in {TOPOLOGIES[source]} "
                           f"with {levels} input levels; not a checkpoint of this neck")
        value = state_dict.pop(prefix + name)
        target = ours.get(theirs[module])
        if target is None:
            left_out.add(f'{module} ({theirs[module]})')
            continue
        key = f'{target}.{rest}'
        if key in own and own[key].shape != value.shape:
            raise AfmError(f"checkpoint key {prefix}{name} ({theirs[module]}) has shape {tuple(value.shape)}, "
                           f"{prefix}{key} here needs {tuple(own[key].shape)}: a checkpoint of another model size")
        moved[prefix + key] = value
    state_dict.update(moved)
    if left_out:
        print_log(f"{prefix[:-1]}: not loaded, no such role in {TOPOLOGIES[topology]}: "
                  f"{', '.join(sorted(left_out))}", logger='current', level=logging.WARNING)


@MODELS.register_module()
class CFPN(FPN):
    """FPN with CARAFE top-down upsampling, in FPN's topology (TOOD's): laterals on C3..C5,
    top-down merges, 3x3 output convs, extra levels as FPN makes them (`add_extra_convs`,
    'on_output' in TOOD: stride-2 convs on P5, then P6).

    FPN's arguments and state_dict keys, plus `upsample_modules` (one CARAFE per top-down
    step). With `upsample_cfg` type 'carafe_nearest' (the default) each upsampler starts as
    nearest upsampling (`NearestStartCARAFE`), so a TOOD checkpoint gives TOOD's features
    exactly; 'carafe' / 'carafe_any' is plain CARAFE. Another neck's checkpoint loads by
    roles (`load_neck_by_roles`): FPN's and CFPN's, not FPN_CARAFE's (another topology).
    """

    topology = 'CFPN'
    accepts = ('FPN', 'CFPN')

    def __init__(self, *args, upsample_cfg: dict = dict(type='carafe_nearest', up_kernel=5, up_group=1,
                                                          encoder_kernel=3, encoder_dilation=1,
                                                          compressed_channels=64), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        up_cfg = dict(upsample_cfg)
        if up_cfg['type'] == 'carafe':  # mmcv's CARAFEPack is CUDA-only: the CPU-capable one
            up_cfg['type'] = 'carafe_any'
        self.upsample_modules = nn.ModuleList(
            MMENGINE_MODELS.build(dict(up_cfg, channels=self.out_channels, scale_factor=2))
            for _ in range(len(self.lateral_convs) - 1))

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        load_neck_by_roles(self, state_dict, prefix, self.topology, self.accepts)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down; CARAFE gives 2x, cropped as nearest's size=
            h, w = laterals[i - 1].shape[-2:]
            laterals[i - 1] = laterals[i - 1] + self.upsample_modules[i - 1](laterals[i])[..., :h, :w]
        outs = [conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals)]
        return tuple(outs + self._extra_levels(inputs, laterals, outs))

    def _extra_levels(self, inputs, laterals: list[Tensor], outs: list[Tensor]) -> list[Tensor]:
        """FPN's extra levels (mmdet FPN.forward's part 2, the same modules and options)."""
        used = len(laterals)
        if self.num_outs <= used:
            return []
        if not self.add_extra_convs:
            extra = [F.max_pool2d(outs[-1], 1, stride=2)]
            for _ in range(self.num_outs - used - 1):
                extra.append(F.max_pool2d(extra[-1], 1, stride=2))
            return extra
        source = dict(on_input=lambda: inputs[self.backbone_end_level - 1], on_lateral=lambda: laterals[-1],
                      on_output=lambda: outs[-1])[self.add_extra_convs]()
        extra = [self.fpn_convs[used](source)]
        for i in range(used + 1, self.num_outs):
            extra.append(self.fpn_convs[i](F.relu(extra[-1]) if self.relu_before_extra_convs else extra[-1]))
        return extra


@MODELS.register_module()
class CARAFEFPN(FPN_CARAFE):
    """mmdet's FPN_CARAFE whose CARAFE upsamplers also run on CPU (a config option: `CFPN`
    is the default, see docs/architecture.md).

    Same arguments and state_dict keys as FPN_CARAFE, so its checkpoints load unchanged;
    only the CARAFEPack modules are swapped for `CARAFEUpsample` (GPU: mmcv kernel). An FPN
    checkpoint (TOOD's) loads by roles: its laterals and output convs; its P6/P7 stride-2 convs
    have no role here (FPN_CARAFE makes P6/P7 from C5) and are left out, never loaded into
    the same-named 3x3 convs of another job.
    """

    topology = 'FPN_CARAFE'
    accepts = ('FPN', 'FPN_CARAFE')

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for i, module in enumerate(self.upsample_modules):
            if isinstance(module, CARAFEPack):
                self.upsample_modules[i] = CARAFEUpsample(
                    channels=module.channels, scale_factor=module.scale_factor,
                    up_kernel=module.up_kernel, up_group=module.up_group,
                    encoder_kernel=module.encoder_kernel,
                    encoder_dilation=module.encoder_dilation,
                    compressed_channels=module.compressed_channels)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        load_neck_by_roles(self, state_dict, prefix, self.topology, self.accepts)
        super()._load_from_state_dict(state_dict, prefix, *args)


@MODELS.register_module()
class P2Feature(BaseModule):
    """Stride-4 map for the HD head: 1x1 lateral on C2 + CARAFE-upsampled P3, then 3x3 conv.

    It mirrors one top-down FPN step, so P2 carries P3's semantics at C2's resolution.
    """

    def __init__(self, in_channels: int = 256, out_channels: int = 256,
                 upsample_cfg: dict = dict(type='carafe_any', up_kernel=5, up_group=1,
                                           encoder_kernel=3, encoder_dilation=1,
                                           compressed_channels=64),
                 norm_cfg: dict | None = None, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.lateral_conv = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg,
                                       bias=norm_cfg is None, act_cfg=None)
        self.fpn_conv = ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                                   bias=norm_cfg is None, act_cfg=None)
        up_cfg = dict(upsample_cfg)
        if up_cfg['type'] in ('carafe', 'carafe_any'):
            up_cfg.pop('type')
            self.upsample = CARAFEUpsample(channels=out_channels, scale_factor=2, **up_cfg)
        else:
            self.upsample = nn.Upsample(scale_factor=2, mode=up_cfg['type'])

    def init_weights(self) -> None:
        super().init_weights()
        for m in (self.lateral_conv.conv, self.fpn_conv.conv):
            xavier_init(m, distribution='uniform')
        if isinstance(self.upsample, CARAFEPack):
            self.upsample.init_weights()

    def forward(self, c2: Tensor, p3: Tensor) -> Tensor:
        return self.fpn_conv(self.merge(c2, p3))

    def merge(self, c2: Tensor, p3: Tensor) -> Tensor:
        """1x1(C2) + CARAFE(P3): P2 before its 3x3 conv."""
        lateral = self.lateral_conv(c2)
        up = self.upsample(p3)[..., :lateral.shape[-2], :lateral.shape[-1]]
        return lateral + up

    @property
    def runs_on_windows(self) -> bool:
        """Whether `on_windows` gives the whole map's numbers: every layer is local (no norm
        layer, whose statistics span the map) and the upsampler is CARAFE (its reach is known)."""
        return (not self.lateral_conv.with_norm and not self.fpn_conv.with_norm
                and isinstance(self.upsample, CARAFEUpsample))

    def on_windows(self, c2: Tensor, p3: Tensor, windows: Windows) -> tuple[Tensor, Tensor]:
        """P2 on the window crops only (window + margin), as `forward` gives it inside the map
        and zero beyond: (crops (M, C, h + 2m, w + 2m), inside (M, 1, ...) 1 within the map).

        Each crop of C2 and of the upsampled P3 is cut one cell larger (the 3x3 conv's reach),
        and the P3 crops `upsample.reach` cells larger again, at stride 8: 13 windows of
        36x36 cells are a quarter of the stride-4 map at 1333x800."""
        c2_crops, inside = crop_windows(c2, windows, extra=1)
        h, w = c2_crops.shape[-2:]
        origins = windows.origins - 1  # stride-4 cells (x, y) of each crop's first cell
        r = self.upsample.reach
        source = torch.div(origins, 2, rounding_mode='floor') - r
        p3_crops, p3_inside = gather_windows(p3, source, windows.rows[:, 0], (-(-h // 2) + 1 + 2 * r,
                                                                            -(-w // 2) + 1 + 2 * r))
        up = self.upsample.forward_in_map(p3_crops, p3_inside)
        up, _ = gather_windows(up, origins - 2 * source, torch.arange(len(up), device=up.device), (h, w))
        merged = (self.lateral_conv(c2_crops) + up) * inside
        inside = inside[..., 1:-1, 1:-1]
        return self.fpn_conv(merged)[..., 1:-1, 1:-1] * inside, inside
