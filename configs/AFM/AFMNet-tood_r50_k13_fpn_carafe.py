# AFMNet with mmdet's FPN_CARAFE topology for CFPN (the other reading of the unpublished
# tood_r50_fpn_1x_coco_carafe.py): P6/P7 made from C5 and merged top-down into P5. A TOOD
# checkpoint starts its laterals and P3..P5 output convs; its P6/P7 convs have no role here
# and are left out (logged), so this neck does not start where TOOD is (docs/architecture.md).
_base_ = './AFMNet-tood_r50_k13.py'
model = dict(
    neck=dict(
        _delete_=True,
        type='CARAFEFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        num_outs=5,
        upsample_cfg=dict(type='carafe', up_kernel=5, up_group=1, encoder_kernel=3,
                          encoder_dilation=1, compressed_channels=64)))
