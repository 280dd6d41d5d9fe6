# TOOD R50 on VisDrone with AFMNet's published training settings: the baseline of the ablation.
_base_ = [
    '../_base_/datasets/visdrone_detection.py',
    '../_base_/schedules/schedule_36e.py',
    '../_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['afmcli.models', 'afmcli.data.transforms', 'afmcli.evaluation.metric'],
    allow_failed_imports=False)

model = dict(
    type='TOOD',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        # ImageNet weights by URL: mmengine's 'torchvision://' scheme would import
        # torchvision, which afmcli never requires (load_from overwrites them anyway).
        init_cfg=dict(type='Pretrained',
                      checkpoint='https://download.pytorch.org/models/resnet50-0676ba61.pth')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        type='TOODHead',
        num_classes=10,
        in_channels=256,
        stacked_convs=6,
        feat_channels=256,
        anchor_type='anchor_free',
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        initial_loss_cls=dict(
            type='FocalLossFP32',
            use_sigmoid=True,
            activated=True,  # probabilities, not logits
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_cls=dict(
            type='QualityFocalLossFP32',
            use_sigmoid=True,
            activated=True,
            beta=2.0,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    # Published: ATSS topk 4 for the first 4 epochs, then TaskAligned topk 3, alpha 1, beta 7.
    train_cfg=dict(
        initial_epoch=4,
        initial_assigner=dict(type='ATSSAssigner', topk=4),
        assigner=dict(type='TaskAlignedAssigner', topk=3),
        alpha=1,
        beta=7,
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    # VisDrone's evaluation reads at most 500 detections per image.
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.01,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=500))

# COCO-pretrained TOOD R50 (mmdet's tood_r50_fpn_mstrain_2x_coco). Placeholder: download it
# from the mmdet model zoo and set the path here or with --cfg-options load_from=PATH.
# The 80-class tood_cls / cls_prob layers do not match 10 classes and stay freshly initialised.
load_from = 'checkpoints/tood_r50_fpn_mstrain_2x_coco_20211210_144231-3b23174c.pth'

# The authors' train.py seeds every run with 3407.
randomness = dict(seed=3407)
