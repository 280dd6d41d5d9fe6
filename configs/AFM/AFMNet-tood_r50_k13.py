# AFMNet (ICASSP 2025) = TOOD + CFPN + HD head + FPD masks + AFFM (top-13 windows) + IRFI.
# Older name of the published file: tood_r50_CFPN_H_FPD_MCP_AFFM_IRFI_k13.
_base_ = './tood_r50_visdrone.py'

hd_test_cfg = dict(
    nms_pre=1000,
    min_bbox_size=3,
    score_thr=0.01,
    nms=dict(type='nms', iou_threshold=0.6),
    max_per_img=500)

model = dict(
    type='AFMNet',
    # CFPN: FPN with CARAFE top-down upsampling (CPU: pure PyTorch, GPU: mmcv's kernel), in
    # TOOD's FPN topology (P6/P7 by stride-2 convs on P5), each CARAFE starting as nearest
    # upsampling: started from a TOOD checkpoint it gives TOOD's features exactly. mmdet's
    # FPN_CARAFE topology is the option type='CARAFEFPN' (AFMNet-tood_r50_k13_fpn_carafe.py).
    neck=dict(
        _delete_=True,
        type='CFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5,
        upsample_cfg=dict(type='carafe_nearest', up_kernel=5, up_group=1, encoder_kernel=3,
                          encoder_dilation=1, compressed_channels=64)),
    # Stride-4 feature for the HD head: C2 lateral + CARAFE-upsampled P3.
    p2_neck=dict(type='P2Feature', in_channels=256, out_channels=256,
                 upsample_cfg=dict(type='carafe_any', up_kernel=5, up_group=1, encoder_kernel=3,
                                   encoder_dilation=1, compressed_channels=64)),
    # FPD: small-object mask on P3 (stride 8), large-object mask on P4 (stride 16).
    mask_estimator=dict(type='MASK_EST', in_channels=256, out_channels=1, model_num=2,
                        feat_channels=128, num_convs=2,
                        loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                        loss_dice=dict(type='DiceLoss', use_sigmoid=True, loss_weight=1.0)),
    # AFFM: P2' = P2 * (1 + m_s), P4 * (1 + g m_l) with g a learned gate from 0 (the main
    # path starts as TOOD's); top-13 windows of 32x32 stride-4 cells, each cropped with 2
    # cells (8 px) of context whose priors are ignored.
    affm=dict(type='AFFM', topk=13, window=32, margin=2, main_gate_init=0.0),
    # IRFI: window tokens (RoIAlign 16x16) + box embedding + global token -> self-attention
    # -> channel-wise scale and shift of each window.
    irfi=dict(type='IRFI', in_channels=256, roi_size=16, num_heads=8),
    # HD head: the main head's design at stride 4, on the mined windows only (a TOODHead
    # that ignores the priors in each window's context margin).
    hd_head=dict(
        type='WindowTOODHead',
        num_classes=10,
        in_channels=256,
        stacked_convs=6,
        feat_channels=256,
        anchor_type='anchor_free',
        anchor_generator=dict(
            type='AnchorGenerator', ratios=[1.0], octave_base_scale=8, scales_per_octave=1,
            strides=[4]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        initial_loss_cls=dict(
            type='FocalLossFP32', use_sigmoid=True, activated=True, gamma=2.0, alpha=0.25,
            loss_weight=1.0),
        loss_cls=dict(
            type='QualityFocalLossFP32', use_sigmoid=True, activated=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        # The detector's train_cfg (published ATSS topk 4 -> TaskAligned topk 3) with the batched
        # assigners: all images in one pass, and ATSS's threshold capped at the best candidate,
        # which keeps the objects that lie inside one 32-px prior (see afmcli.models.assigners).
        train_cfg=dict(initial_assigner=dict(type='BatchATSSAssigner', topk=4, keep_best=True),
                       assigner=dict(type='BatchTaskAlignedAssigner', topk=3)),
        test_cfg=hd_test_cfg),
    # The HD head starts from the main head's weights when load_from has no hd_head keys.
    hd_init_from_main=True,
    # The HD head's boxes enter the merge with scores ramped over its first 500 training
    # iterations (the learning-rate warm-up's length): from TOOD, merged = main head at step 0.
    hd_merge_warmup=500,
    mask_render=dict(kind='oval', small_area=32 * 32),
    merge_cfg=dict(iou_threshold=0.6, max_per_img=500))
