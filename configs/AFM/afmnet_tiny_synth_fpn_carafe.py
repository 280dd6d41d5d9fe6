# The tiny AFMNet with mmdet's FPN_CARAFE topology for CFPN (CARAFEFPN: P6/P7 from C5, merged
# top-down into P5), the other reading of the authors' neck: bench_accuracy's row
# AFMNet+FPN_CARAFE against AFMNet (CFPN in TOOD's topology, the default).
_base_ = ['./afmnet_tiny_synth.py']
model = dict(
    neck=dict(
        _delete_=True, type='CARAFEFPN', in_channels=[16, 32, 64, 128], out_channels=64,
        start_level=1, num_outs=5,
        upsample_cfg=dict(type='carafe', up_kernel=3, up_group=1, encoder_kernel=3,
                          encoder_dilation=1, compressed_channels=16)))
