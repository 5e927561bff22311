# Study variant (d): SNIPER with negative chips, mined from the proposals
# of a short RPN (d_rpn.py) trained on positive chips; the study script
# counts the RPN training and the proposal extraction in (d)'s budget.
_base_ = ['./c_sniper.py']

proposal_file = 'work_dirs/kit_ais/proposals.pkl'  # set by the study script
train_dataloader = dict(
    dataset=dict(
        neg_proposals=dict(
            file=proposal_file, on_missing='skip', on_bad_box='drop'),
        num_neg_chips_per_image=2,
        neg_min_proposals=(25, 10)))
