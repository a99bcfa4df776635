"""``train_detector``'s proposal flags as ``keras_spp.detection.proposal_cache``'s
keyword arguments."""

from keras_spp.detection import proposal_cache


def search_params(args):
    """``selective_search``'s settings from ``train_detector``'s flags."""
    return proposal_cache.search_params(
        max_proposals=args.max_proposals,
        min_size=args.min_proposal_size,
        max_side=args.proposal_max_side,
        base_k=args.proposal_k,
    )


def proposals_tag(args):
    """The proposals' name in the window feature cache's key."""
    return proposal_cache.proposals_tag(search_params(args), precomputed=args.proposals_from)


def proposals_for(examples, args):
    """``proposal_cache.Proposals`` for ``examples`` as the flags say; prints how many."""
    cache_dir = None if args.proposals_from else proposal_cache.proposal_cache(args.data_dir, args.dataset)
    proposals = proposal_cache.proposals_for(
        examples, precomputed=args.proposals_from, cache_dir=cache_dir, search=search_params(args)
    )
    print(proposals.summary(), flush=True)
    return proposals
