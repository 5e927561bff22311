# Faster R-CNN R50-FPN on SNIPER chips with negative chips: 2 per image and
# epoch, mined from the proposals of rpn_r50_fpn_sniper-2e_coco.py
# (tools/train_with_negatives.sh runs the three steps).
_base_ = './faster-rcnn_r50_fpn_sniper-1x_coco.py'

proposal_file = 'data/coco/proposals/rpn_r50_fpn_sniper-2e_train2017.pkl'

train_dataloader = dict(
    dataset=dict(
        neg_proposals=dict(
            file=proposal_file, on_missing='skip', on_bad_box='drop'),
        num_neg_chips_per_image=2,
        # More than 25 proposals at the finest scale, 10 at the others.
        neg_min_proposals=(25, 10),
        # Images without GT keep contributing negative chips.
        dataset=dict(filter_cfg=dict(filter_empty_gt=False))))
