"""``earengine train`` and ``earengine probe``.

Both import torch inside their functions, so ``earengine --help`` stays fast.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train an ear with contrastive predictive coding",
        description="Train an ear (scaleogram, encoder, autoregressive model) with CPC and write a "
        "checkpoint folder. Works under torchrun (DistributedDataParallel; rank 0 writes).",
    )
    p.add_argument("--data", default=None,
                   help="'synthetic' (16 tracks), 'synthetic:N' or a folder of audio files (default synthetic:96)")
    p.add_argument("--config", default="small", choices=("small", "paper"), help="preset (default small)")
    p.add_argument("--width", type=float, default=None, help="channel multiplier (small: 0.25, paper: 1)")
    p.add_argument("--dropout", type=float, default=None, help="dropout probability in the blocks (default 0)")
    p.add_argument("--contrast", choices=("across-time", "batch"), default=None,
                   help="CPC negatives: every clip x every horizon (across-time, default) or every clip")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 1000)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", required=True, help="output folder, e.g. models/my-ear")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (per process)")
    p.add_argument("--clip-s", type=float, default=None, help="clip length in seconds")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="seeds weights, clips and dropout")
    p.add_argument("--data-seed", type=int, default=None, help="seed of the synthetic corpus")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between resumable checkpoints")
    p.add_argument("--keep-checkpoints", type=int, default=None,
                   help="periodic checkpoints kept on disk (default 2; more to probe the run's curve)")
    p.add_argument("--stats-clips", type=int, default=None, help="clips for the activation statistics")
    p.add_argument("--cache", choices=("auto", "on", "off"), default=None,
                   help="precompute the training data's scaleograms (auto: when under 2 h)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (1 is fastest on a busy machine: waiting threads spin)")
    p.set_defaults(func=_train)

    q = subparsers.add_parser(
        "probe",
        help="linear-probe an ear the paper's way: track or composer identification on held-out music",
        description="Compare the ear with the same architecture randomly initialised and trained "
        "supervised, by the accuracy of a linear classifier on held-out clips: of the track "
        "(--task tracks, the last 20 %% of each track held out) or of the composer (--task "
        "composers, whole works held out). --split random is the Immersions paper's protocol "
        "instead: clips of whole tracks (all works) split at random, seeded. Clip scaleograms and "
        "the baselines are cached under $EARENGINE_HOME/cache/probe, so a second probe of another "
        "ear is quick.",
    )
    q.add_argument("--model", required=True, help="checkpoint folder")
    q.add_argument("--task", choices=("tracks", "composers"), default="tracks",
                   help="what the classifier tells apart (default tracks)")
    q.add_argument("--split", choices=PROBE_SPLITS, default="held-out",
                   help="held-out (default): the last 20 %% of each track, whole works; random: the "
                        "paper's protocol, clips split at random within each class (seeded by --seed)")
    q.add_argument("--data", default=None,
                   help="tracks: 'synthetic', 'synthetic:N' or a folder (default: the soundtrack corpus's "
                        "nexuiz-music when built, else the ear's own data); composers: a composer corpus "
                        "(default $EARENGINE_HOME/corpus/composers)")
    q.add_argument("--compare", default=None,
                   help="a second ear of the same architecture trained with the other CPC contrast, "
                        "probed as its own row")
    q.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic corpus when --data is given")
    q.add_argument("--clips-per-track", type=int, default=None, help="clips per track and split (default 16)")
    q.add_argument("--clips-per-composer", type=int, default=None,
                   help="clips per composer and split (default 48)")
    q.add_argument("--clip-s", type=float, default=None, help="clip length in seconds (default 4.5)")
    q.add_argument("--feature", choices=("last", "mean"), default=None, help="last context vector or mean over time")
    q.add_argument("--steps", type=int, default=None, help="classifier and supervised-baseline steps (default 300)")
    q.add_argument("--seed", type=int, default=None)
    q.add_argument("--device", default="cpu")
    q.add_argument("--write", action="store_true", help="store the results in the checkpoint's config.json")
    q.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    q.set_defaults(func=_probe)


#: The probe's ways of dividing clips, as :data:`earengine.ear.probe_data.PROBE_SPLITS` (kept here
#: so ``earengine --help`` imports neither numpy nor torch; a test holds them equal).
PROBE_SPLITS = ("held-out", "random")

#: The track-identification set of the soundtrack corpus: 17 electronic tracks with strong beats,
#: the closest to the paper's house tracks.
DEFAULT_TRACK_SET = "nexuiz-music"


def _set_threads(threads) -> None:
    if threads is None:
        return
    from earengine.errors import ConfigError

    if threads < 1:
        raise ConfigError(f"threads={threads} must be >= 1")
    import torch

    torch.set_num_threads(threads)


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from earengine.ear.model import EarConfig
    from earengine.ear.train import TrainConfig, train

    _set_threads(args.threads)
    ear_config = EarConfig.preset(args.config, width=args.width)
    if args.dropout is not None:
        ear_config = dataclasses.replace(ear_config, dropout=args.dropout)
    if args.contrast is not None:
        cpc = dataclasses.replace(ear_config.cpc, score_across_time=args.contrast == "across-time")
        ear_config = dataclasses.replace(ear_config, cpc=cpc)
    config = TrainConfig.preset(
        args.config,
        data=args.data,
        steps=args.steps,
        batch_size=args.batch_size,
        clip_s=args.clip_s,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        data_seed=args.data_seed,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        stats_clips=args.stats_clips,
        cache=args.cache,
    )
    result = train(ear_config, config, args.out, device=args.device, resume=args.resume)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"train: {result.steps} steps in {result.wall_s:.0f} s, final loss {result.final_loss:.3f}, "
            f"contrastive accuracy {100 * result.final_accuracy:.1f}%"
        )
    return 0


def _probe(args: argparse.Namespace) -> int:
    import dataclasses

    from earengine.corpus.manifest import corpus_home
    from earengine.ear.checkpoint import load_ear
    from earengine.ear.probe import ProbeConfig, format_probe_table, probe_key, run_probe, write_probe
    from earengine.ear.probe_data import composer_set, track_set
    from earengine.corpus.sources import open_source

    _set_threads(args.threads)
    loaded = load_ear(args.model, device=args.device)
    overrides = {
        "clips_per_track": args.clips_per_track,
        "clips_per_composer": args.clips_per_composer,
        "clip_s": args.clip_s,
        "feature": args.feature,
        "steps": args.steps,
        "seed": args.seed,
    }
    config = dataclasses.replace(ProbeConfig(), **{k: v for k, v in overrides.items() if v is not None})
    compare = load_ear(args.compare, device=args.device) if args.compare else None
    scaleogram = loaded.ear.scaleogram.to(args.device)
    if args.task == "composers":
        folder = args.data or corpus_home("composers")
        probe_set = composer_set(folder, scaleogram, config, device=args.device, split=args.split)
    else:
        data = args.data
        if data is None and (corpus_home("soundtracks") / DEFAULT_TRACK_SET).is_dir():
            data = str(corpus_home("soundtracks") / DEFAULT_TRACK_SET)
        source = open_source(data, seed=args.data_seed) if data else None
        probe_set = (track_set(source, scaleogram, config, device=args.device, split=args.split)
                     if source is not None else None)
    result = run_probe(loaded, None, config, device=args.device, probe_set=probe_set, compare=compare,
                       split=args.split)
    print(format_probe_table(result))
    if args.write:
        write_probe(loaded.path, result)
        key = probe_key(result["task"], args.split)
        print(f"probe: results written to {loaded.path / 'config.json'} as probes.{key}")
    return 0
