"""``python -m studio.training vae|gan|gan-attributes|diffusion|diffusion-mouth|dit|dit-mouth|decoder|autoencoder-mouth|classifier|all|eval|cards|prior|latent-directions``."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from studio.training.common import DEFAULT_OUT

# name -> (module, default minutes); "all" trains in this order (quick ones first).
TRAINERS = {
    "classifier": ("studio.training.train_classifier", 6.0),
    "vae": ("studio.training.train_vae", 12.0),
    "diffusion": ("studio.training.train_diffusion", 55.0),
    # its mouth fine-tune (issue 27): smile/frown twins, cross-attention at 16 x 16
    "diffusion-mouth": ("studio.training.train_diffusion_mouth", 60.0),
    # the diffusion transformer (SD3 format) on studio-tiny-diffusion's autoencoder: after it;
    # twins (smile, glasses) in its batches from the first step (see train_dit)
    "dit": ("studio.training.train_dit", 80.0),
    # the twin trainer as a fine-tune of a saved DiT (issues 24, 27): an experiment, not in
    # "all": two fine-tunes of the first DiT did not teach it the mood word (see its module)
    "dit-mouth": ("studio.training.train_dit_mouth", 25.0),
    # the shared autoencoder's decoder, fine-tuned for the mouth on dark skin (issue 27): an
    # experiment, not in "all": it decoded generated latents worse (see its module)
    "decoder": ("studio.training.train_decoder", 30.0),
    # the shared autoencoder (encoder too) for the mouth on dark skin (issues 24, 27); the
    # UNet and DiT are then fine-tuned on its latents (diffusion-mouth, dit-mouth)
    "autoencoder-mouth": ("studio.training.train_encoder_mouth", 15.0),
    "gan": ("studio.training.train_gan", 12.0),
    # the GAN's latent attribute reader (for its sliders): after every GAN run
    "gan-attributes": ("studio.training.train_gan_attributes", 12.0),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.training", description=__doc__)
    parser.add_argument("command", choices=[*TRAINERS, "all", "eval", "cards", "prior",
                                            "latent-directions"],
                        help="a model to train, all of them, eval, cards, prior (rewrite "
                             "the VAE's latent prior from its weights), or latent-directions "
                             "(the VAE's shipped paired slider directions)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-clock training budget per model (default: per model)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder holding one sub-folder per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the weights in --out (every model)")
    parser.add_argument("--quick", action="store_true", help="eval on fewer samples")
    parser.add_argument("--sweep", action="store_true",
                        help="eval: compare sampling settings of the diffusion model only")
    parser.add_argument("--only", nargs="*", default=None, help="eval/cards: these models only "
                        "(latent-directions: vae)")
    args = parser.parse_args(argv)
    if args.command == "eval":
        from studio.training.evaluate import run_eval, sweep_diffusion

        if args.sweep:
            sweep_diffusion(args.out)
        else:
            run_eval(args.out, quick=args.quick, only=args.only)
        return 0
    if args.command == "prior":
        from studio.training.train_vae import write_prior

        write_prior(args.out)
        return 0
    if args.command == "latent-directions":
        from studio.training.latent_directions import build

        build(args.out, only=args.only)
        return 0
    if args.command == "cards":
        from studio.training.cards import write_all_cards

        write_all_cards(args.out, only=args.only)
        return 0
    experiments = ("decoder", "dit-mouth", "autoencoder-mouth")
    names = ([n for n in TRAINERS if n not in experiments] if args.command == "all"
             else [args.command])
    for name in names:
        module, minutes = TRAINERS[name]
        train = importlib.import_module(module).train
        kwargs = {"resume": True} if args.resume else {}
        train(args.out, minutes=args.minutes or minutes, seed=args.seed, **kwargs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
