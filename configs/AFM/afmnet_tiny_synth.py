# Tiny AFMNet for CPU tests and `afm demo`: tood_tiny_synth.py's data, schedule and sizes
# with every AFMNet branch (CFPN, HD head, FPD masks, AFFM windows, IRFI).
_base_ = ['./tood_tiny_synth.py']

# CARAFE kernels are 3x3 here (published: 5x5) to keep CPU iterations short.

hd_test_cfg = dict(
    nms_pre=500, min_bbox_size=3, score_thr=0.01, nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=300)

model = dict(
    type='AFMNet',
    neck=dict(
        _delete_=True, type='CFPN', in_channels=[16, 32, 64, 128], out_channels=64,
        start_level=1, add_extra_convs='on_output', num_outs=5,
        upsample_cfg=dict(type='carafe_nearest', up_kernel=3, up_group=1, encoder_kernel=3,
                          encoder_dilation=1, compressed_channels=16)),
    p2_neck=dict(type='P2Feature', in_channels=16, out_channels=64,
                 upsample_cfg=dict(type='carafe_any', up_kernel=3, up_group=1, encoder_kernel=3,
                                   encoder_dilation=1, compressed_channels=16)),
    mask_estimator=dict(type='MaskEstimator', in_channels=64, out_channels=1, model_num=2,
                        feat_channels=32, num_convs=1,
                        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True),
                        loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                        loss_dice=dict(type='DiceLoss', use_sigmoid=True, loss_weight=1.0)),
    affm=dict(type='AFFM', topk=4, window=24, margin=2, main_gate_init=0.0),
    irfi=dict(type='IRFI', in_channels=64, roi_size=8, reduce_channels=16, num_heads=4),
    hd_head=dict(
        type='WindowTOODHead', num_classes=10, in_channels=64, stacked_convs=2, feat_channels=64,
        anchor_type='anchor_free',
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[4]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        initial_loss_cls=dict(type='FocalLossFP32', use_sigmoid=True, activated=True, gamma=2.0,
                              alpha=0.25, loss_weight=1.0),
        loss_cls=dict(type='QualityFocalLossFP32', use_sigmoid=True, activated=True, beta=2.0,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        train_cfg=dict(initial_assigner=dict(type='BatchATSSAssigner', topk=4, keep_best=True),
                       assigner=dict(type='BatchTaskAlignedAssigner', topk=3)),
        test_cfg=hd_test_cfg),
    hd_init_from_main=False,
    hd_merge_warmup=50,  # the learning-rate warm-up's length
    mask_render=dict(kind='oval', small_area=32 * 32),
    merge_cfg=dict(iou_threshold=0.6, max_per_img=300))
