"""The command-line arguments of `gpt2zh evaluate` and `gpt2zh generate`, kept beside the commands they feed.

No Hugging Face import here: pipeline/cli.py builds its parser before the environment is prepared (G13).
"""

import argparse

MODEL_HELP = ("a run's model/ folder, a run directory, any GPT-2 folder, or a Hub model id "
              "<owner>/<name>[@<revision>]")


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluate")
    group.add_argument("--model", action="append", dest="models", metavar="M", required=True,
                       help=f"{MODEL_HELP}; repeat it to compare models on the same documents")
    group.add_argument("--stride", type=int, metavar="N",
                       help="tokens between the starts of two scoring windows (1 .. the model's context); every "
                            "token is scored once with at least context - stride tokens before it (default: half "
                            "of each model's context; its context gives stage 3's fixed blocks)")
    group.add_argument("--max-documents", type=int, metavar="N", help="evaluate on the first N documents only")
    group.add_argument("--json", action="store_true", help="print a JSON list, one object per model, best first")


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    parser.add_argument("--model", required=True, metavar="M", help=MODEL_HELP)
    sampling = parser.add_argument_group(
        "sampling (default: the model's generation_config.json, which stage 3 writes; else do_sample, "
        "temperature 0.8, top-k 50, 64 new tokens)")
    sampling.add_argument("--max-new-tokens", type=int, metavar="N", help="tokens to generate at most")
    sampling.add_argument("--temperature", type=float, metavar="T",
                          help=">= 0; lower is more conservative, 0 always takes the most likely token")
    sampling.add_argument("--top-k", type=int, metavar="K", help="sample among the K likeliest tokens (0 = all)")
    sampling.add_argument("--top-p", type=float, metavar="P", help="sample among the likeliest tokens whose "
                                                                   "probabilities add up to P (0 < P <= 1)")
    sampling.add_argument("--num-samples", type=int, default=1, metavar="N", help="continuations to print (default 1)")
    sampling.add_argument("--seed", type=int, metavar="S",
                          help="sample i is drawn with torch seeded to S + i: the same seed gives the same text on "
                               "the same machine (default: a random seed, printed)")
    common = parser.add_argument_group("common")
    common.add_argument("--cache-dir", metavar="DIR",
                        help="Hugging Face cache (HF_HOME), set before any HF library is imported")
    common.add_argument("--quiet", action="store_true", help="the generated text only")
