"""`limuse-edge train --config CONFIG.yaml [--resume]` (several GPUs: torchrun --nproc_per_node=G -m limuse_edge.cli train ...)."""
from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="training YAML (see configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override config keys, e.g. --set max_minutes=30 out_dir=runs/x")


def run(args) -> int:
    import yaml

    from limuse_edge.train import TrainConfig, train
    cfg = TrainConfig.from_yaml(args.config).to_dict()
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set: got {item!r}; expected KEY=VALUE")
        cfg[key] = yaml.safe_load(value)
    state = train(TrainConfig.from_dict(cfg), resume=args.resume)
    print(f"done: {state['epoch']} epochs, {state['step']} steps, best valid SI-SDR {state['best']:.2f} dB")
    return 0
