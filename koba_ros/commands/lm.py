"""koba lm tokenizer|prepare|train|expand|gqa|export|import|sample|eval|influence|tickets|classify|repro|bench: the
NLP/LLM library's BPE learning, token files, training, model growth, Hugging Face GPT-2 interchange, sampling,
evaluation, training-data influence, multi-ticket ensemble classifiers, paper reproductions, GPU benchmark."""
import argparse

from koba_ros.commands.arg_types import finite_float, non_negative_float, positive_float, positive_int, random_seed

# tokenizer.KINDS, without importing torch to build the parser (a test keeps the two equal)
TOKENIZER_KINDS = ("byte", "gpt2", "bpe", "hf")

HELP = ("Train transformer LMs, grow them, move them to and from Hugging Face (GPT-2, Llama, Qwen, Mistral, "
        "Gemma, GPT-NeoX, Phi, Phi-3), sample from them, score them on a text, find mislabeled or harmful training "
        "lines, build and use multi-ticket ensemble classifiers, run the paper reproductions (b2t, shape, alone, "
        "spike, wso, expand, family, turnover, instance, phsic, augment, tickets, metadata), benchmark.")

# --embed / --hidden of `koba lm influence --train`: wider is no use to a bag-of-n-grams classifier, and 1e8 ended
# in the allocator's RuntimeError traceback
MAX_WIDTH = 65536


def layer_width(text: str) -> int:
    """A layer width from 1 to MAX_WIDTH, else argparse's one-line usage error."""
    value = positive_int(text)
    if value > MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_WIDTH}, got {text!r}")
    return value


REPROS = ("b2t", "shape", "alone", "spike", "wso", "expand", "family", "turnover", "instance", "phsic", "augment",
          "tickets", "metadata")


def add_arguments(p):
    sub = p.add_subparsers(dest="lm_command", metavar="ACTION")
    sub.required = True
    prepare = sub.add_parser("prepare", help="Tokenise a text once into a token file (.bin) that training maps.")
    prepare.add_argument("--data", required=True,
                         help="A UTF-8 text file, a folder (its *.txt files), a quoted glob ('corpus/**/*.md'), or "
                              "'builtin:docstrings'.")
    prepare.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="byte")
    prepare.add_argument("--vocab", default="", help="bpe: vocab.json; gpt2: a .tiktoken ranks file (optional); "
                                                     "hf: a Hugging Face tokenizer.json.")
    prepare.add_argument("--merges", default="", help="bpe: merges.txt.")
    prepare.add_argument("--out", required=True, help="The token file to write (.bin; its description: .bin.json).")
    prepare.add_argument("--json", action="store_true", help="Print the description as one JSON object.")

    learn = sub.add_parser("tokenizer", help="Learn a byte-level BPE vocabulary from a dataset (tokenizer: bpe).")
    learn.add_argument("--data", required=True, help="A text file, a folder (its *.txt) or a quoted glob.")
    learn.add_argument("--vocab-size", type=int, required=True, help="Entries: 256 bytes + <|endoftext|> + merges.")
    learn.add_argument("--min-frequency", type=int, default=2, help="A pair seen fewer times is never merged.")
    learn.add_argument("--out", required=True, help="A new folder for vocab.json and merges.txt.")
    learn.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    train = sub.add_parser("train", help="Train a decoder-only LM from a YAML config (works under torchrun).")
    train.add_argument("--config", required=True, help="YAML file (see config/lm/*.yaml).")
    train.add_argument("--out", default=None, help="Override the config's output folder.")
    train.add_argument("--steps", type=int, default=None, help="Override the number of optimiser steps.")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="", help="Override the device.")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="Override a config key, the value read as YAML: lr=3e-4, model.dropout=0.1, "
                            "init_from=runs/lm/tiny (repeatable).")
    train.add_argument("--no-progress", action="store_true", help="No progress bar.")
    train.add_argument("--json", action="store_true", help="Print a JSON summary.")

    grow = sub.add_parser("expand", help="Grow a trained LM wider and deeper into a checkpoint that computes the "
                                         "same function (train on with init_from).")
    grow.add_argument("--checkpoint", required=True, help="The source run's folder or its checkpoint/ folder.")
    grow.add_argument("--out", required=True, help="A new folder for the grown checkpoint.")
    grow.add_argument("--width-factor", type=int, default=1, help="d_model, heads and FFN width times this.")
    grow.add_argument("--layers", type=int, default=0,
                      help="The new depth (Pre-LN and sandwich norms only; 0: the source's).")
    grow.add_argument("--data", default="", help="Check on this text that the loss is unchanged (within 1e-4).")
    grow.add_argument("--eval-tokens", type=int, default=65536, help="Tokens of --data the check scores.")
    grow.add_argument("--noise", type=non_negative_float, default=0.01,
                      help="Symmetry-breaking noise, relative to each weight's std (it cancels in the output).")
    grow.add_argument("--seed", type=random_seed, default=0)
    grow.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    gqa = sub.add_parser("gqa", help="Pool a trained LM's key/value heads into fewer (grouped-query attention, "
                                     "Ainslie et al. 2023); uptrain the result with init_from.")
    gqa.add_argument("--checkpoint", required=True, help="The source run's folder or its checkpoint/ folder.")
    gqa.add_argument("--out", required=True, help="A new folder for the converted checkpoint.")
    gqa.add_argument("--kv-heads", type=int, required=True,
                     help="Key/value heads after pooling (a divisor of the source's).")
    gqa.add_argument("--data", default="", help="Score this text with the source and the converted model.")
    gqa.add_argument("--eval-tokens", type=int, default=65536, help="Tokens of --data scored.")
    gqa.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    export = sub.add_parser("export", help="Write a trained GPT-2-, Llama-, GPT-NeoX- or Phi-shaped LM as a Hugging "
                            "Face folder (GPT2LMHeadModel, LlamaForCausalLM, Qwen2/Qwen3/Mistral/Gemma/Gemma2/Gemma3/"
                            "Phi3ForCausalLM, GPTNeoXForCausalLM or PhiForCausalLM).")
    export.add_argument("--checkpoint", required=True, help="The run's folder or its checkpoint/ folder.")
    export.add_argument("--out", required=True, help="A new folder (config, weights, tokenizer files).")
    export.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    load = sub.add_parser("import", help="Turn a Hugging Face GPT-2, Llama, Qwen2/3, Mistral, Gemma 1/2/3 (text), "
                                         "GPT-NeoX, Phi-1/1.5/2 or Phi-3 (a save_pretrained folder) into a "
                                         "checkpoint that init_from, sample and eval read.")
    load.add_argument("--hf", required=True, help="A save_pretrained folder of one of those (or a hub name, if the "
                                                  "hub is reachable).")
    load.add_argument("--out", required=True, help="A new folder for the checkpoint.")
    load.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="",
                      help="What made its ids (default: byte for a folder `koba lm export` wrote from a "
                           "byte-level run, else hf when the folder has a tokenizer.json, which is copied into the "
                           "checkpoint, else bpe when it has a vocab.json + merges.txt other than GPT-2's, else gpt2 "
                           "for GPT-2's 50,257-id vocabulary).")
    load.add_argument("--vocab", default="", help="bpe: vocab.json (koba lm tokenizer writes one); hf: a "
                                                  "tokenizer.json.")
    load.add_argument("--merges", default="", help="bpe: merges.txt.")
    load.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    sample = sub.add_parser("sample", help="Continue a prompt with a trained LM (a koba lm train checkpoint).")
    sample.add_argument("--checkpoint", required=True, help="The run's folder or its checkpoint/ folder.")
    sample.add_argument("--prompt", required=True, help="Text to continue.")
    sample.add_argument("--tokens", type=int, default=200, help="At most this many new tokens.")
    sample.add_argument("--temperature", type=float, default=0.8, help="0: always the most likely token.")
    sample.add_argument("--top-k", type=int, default=50, help="Draw among the k most likely tokens (0: all).")
    sample.add_argument("--top-p", type=float, default=1.0,
                        help="Draw among the fewest most likely tokens whose probability reaches p (1: all).")
    sample.add_argument("--seed", type=random_seed, default=0)
    sample.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    sample.add_argument("--no-cache", action="store_true",
                        help="Run the whole context through the model for every token (no KV cache; same tokens).")
    sample.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    evaluate = sub.add_parser("eval", help="Loss, perplexity and bits per byte of a trained LM on a whole text.")
    evaluate.add_argument("--checkpoint", required=True, help="The run's folder or its checkpoint/ folder.")
    evaluate.add_argument("--data", required=True,
                          help="A UTF-8 text file, a folder or quoted glob of them, a koba lm prepare .bin, or "
                               "'builtin:docstrings'.")
    evaluate.add_argument("--seq-len", type=int, default=0, help="Window length (0: the run's training seq_len).")
    evaluate.add_argument("--stride", type=int, default=0,
                          help="Tokens between window starts; each window scores its last STRIDE targets "
                               "(0: seq_len, windows that do not overlap).")
    evaluate.add_argument("--batch-size", type=int, default=8, help="Windows per forward pass.")
    evaluate.add_argument("--per-document", action="store_true",
                          help="Score each file of a folder or glob alone, from its first token, as in use.")
    evaluate.add_argument("--split", choices=("val", "all"), default="",
                          help="When --data is the run's own train_data: val scores only the part it held out "
                               "(val_fraction; the default where there is one), all scores everything (marked as "
                               "overlapping the training data).")
    evaluate.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    evaluate.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    influence = sub.add_parser("influence", help="Turn-over dropout influence: rank a labelled text set's lines "
                               "(label<TAB>text) by how likely they are mislabeled and how much they hurt a validation "
                               "set, or a trained LM's documents by how much they help a target text.")
    source = influence.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", help="label<TAB>text lines, UTF-8: train a classifier on them and rank them.")
    source.add_argument("--checkpoint", action="append",
                        help="A koba lm train run with model.turnover_p > 0: rank its training documents by influence "
                             "on --data. Repeat it for runs on the same data with different model.turnover_seed: "
                             "their estimates are averaged.")
    influence.add_argument("--data", default="", help="With --checkpoint: the target text (file, folder or glob).")
    influence.add_argument("--val", default="", help="With --train: clean label<TAB>text lines; also rank by "
                                                     "influence on them.")
    influence.add_argument("--out", default="runs/influence", help="Folder for the CSV.")
    influence.add_argument("--epochs", type=positive_int, help="With --train: passes over the training lines "
                                                                  "(default 30).")
    influence.add_argument("--embed", type=layer_width, help="With --train: embedding width, turn-over masked "
                                                             f"(default 512, at most {MAX_WIDTH}).")
    influence.add_argument("--hidden", type=layer_width, help="With --train: hidden width, turn-over masked "
                                                              f"(default 1024, at most {MAX_WIDTH}).")
    influence.add_argument("--mask-seeds", type=int, help="With --train: average the estimates of this many "
                           "classifiers with independent masks (default 1; more precise, that many times the "
                           "training).")
    influence.add_argument("--seed", type=random_seed, help="With --train: the classifier's seed (default 0).")
    influence.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    tickets = sub.add_parser("tickets", help="Build a multi-ticket ensemble text classifier (Kobayashi et al. 2022) "
                             "from label<TAB>text lines: members fine-tuned as different sparse sub-networks of one "
                             "pretrained word encoder, their probabilities averaged.")
    tickets.add_argument("--train", required=True, help="label<TAB>text lines, UTF-8.")
    tickets.add_argument("--val", default="", help="label<TAB>text lines to report the ensemble's accuracy on.")
    tickets.add_argument("--unlabelled", default="", help="More text, one sentence a line, for the pretraining "
                         "(the training and --val texts are always used, without their labels).")
    tickets.add_argument("--out", default="runs/tickets", help="Folder for tickets.safetensors and tickets.json.")
    tickets.add_argument("--members", type=int, default=4)
    tickets.add_argument("--sparsity", type=finite_float, default=0.3, help="Pruned share per member (rounds of 0.1).")
    tickets.add_argument("--l1", type=non_negative_float, default=1e-3,
                         help="Random-mask L1 lambda (0: plain tickets).")
    tickets.add_argument("--epochs", type=int, default=20, help="Fine-tuning passes per pruning round.")
    tickets.add_argument("--pretrain-steps", type=int, default=2000, help="Masked word LM steps.")
    tickets.add_argument("--seed", type=random_seed, default=0)
    tickets.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    classify = sub.add_parser("classify", help="Label texts with an ensemble made by koba lm tickets.")
    classify.add_argument("--model", required=True, help="The folder koba lm tickets wrote.")
    classify.add_argument("texts", nargs="+", help="Texts to label: every word in the ensemble's vocabulary, and no "
                          "longer than the longest sentence it was built from (a longer one in --unlabelled of koba "
                          "lm tickets raises that limit).")
    classify.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    repro = sub.add_parser("repro", help="Reproduce a paper's headline effect, with a plot.")
    repro.add_argument("name", choices=REPROS)
    size = repro.add_mutually_exclusive_group()  # --quick is --size quick: both at once ran one, recorded the other
    size.add_argument("--quick", action="store_true", help="The small CPU version (minutes): the same as --size quick.")
    repro.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    size.add_argument("--size", choices=("test", "quick", "full"), default="",
                      help="Explicit size (test: the smallest that shows the effect, used by the tests).")
    repro.add_argument("--seed", type=random_seed, default=0)
    repro.add_argument("--out", default="runs/repro", help="Folder for the JSON result and the PNG plot.")
    repro.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    bench = sub.add_parser("bench", help="Training throughput and MFU: ours vs Hugging Face GPT2LMHeadModel.")
    bench.add_argument("--size", choices=("gpt2", "tiny"), default="gpt2", help="gpt2: 124M, seq 1024, batch 16.")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    bench.add_argument("--steps", type=int, default=20, help="Timed steps per variant (after warm-up).")
    bench.add_argument("--variants", default="ours,ours_compiled,hf,hf_compiled", help="Comma-separated.")
    bench.add_argument("--peak-tflops", type=positive_float, default=989.0, help="Dense bf16 peak for MFU (H100 SXM).")
    bench.add_argument("--profile-steps", type=int, default=0,
                       help="Also profile this many steps per variant: kernel time per category (GEMM, ...).")
    bench.add_argument("--out", default="", help="Also write the JSON here.")
    bench.add_argument("--json", action="store_true", help="Print the result as one JSON object.")


def init_from_hint(folder: str) -> str:
    """How to train on from what expand or gqa wrote: the config that trained the source names the source's model,
    which the folder's no longer matches, so init_from refuses it; a config without model: takes the folder's."""
    return f"a config without a model: section (it takes the folder's model) and --set init_from={folder}"


def require_device(device: str) -> None:
    """One line, not a CUDA traceback, for --device cuda on a machine without it."""
    if device == "cuda":
        import torch

        from koba_ros.errors import KobaError

        if not torch.cuda.is_available():
            raise KobaError("--device cuda requested but no CUDA device is available")


def run(args):
    import json

    from koba_ros.cli import print_json

    if args.lm_command == "prepare":
        from koba_ros.nlp.prepared import prepare
        from koba_ros.nlp.tokenizer import build_tokenizer

        tokenizer = build_tokenizer(args.tokenizer, args.vocab, args.merges)
        result = prepare(args.data, tokenizer, {"tokenizer": args.tokenizer, "vocab": args.vocab,
                                                "merges": args.merges}, args.out)
        if not args.json:
            print(f"{result['out']}: {result['tokens']} {args.tokenizer} tokens ({result['dtype']}) from "
                  f"{result['text_bytes']} bytes of {result['source']}")
            return 0
    elif args.lm_command == "tokenizer":
        from koba_ros.nlp.bpe_training import train_bpe

        result = train_bpe(args.data, args.vocab_size, args.out, args.min_frequency)
        if not args.json:
            gpt2 = (f" (GPT-2's BPE: {result['gpt2_bytes_per_token']})" if "gpt2_bytes_per_token" in result else "")
            print(f"{result['out']}: {result['vocab_size']} entries, {result['bytes_per_token']} bytes per token on "
                  f"{result['data']}{gpt2}; in a config: tokenizer: bpe, vocab: {result['vocab']}, "
                  f"merges: {result['merges']}, model.vocab_size >= {result['vocab_size']}, "
                  f"model.pad_id: {result['eos_id']}")
            return 0
    elif args.lm_command == "train":
        from koba_ros.nlp import distributed
        from koba_ros.nlp.trainer import TrainConfig, train

        # The flags are set before the config is read, as --set is: --out decides which checkpoint a fine-tune
        # resumes from and takes its model and tokenizer from (review 29); they are checked like the file's values.
        flags = {key: value for key, value in (("out", args.out), ("steps", args.steps)) if value is not None}
        flags |= {"device": args.device} if args.device else {}
        flags |= {"progress": False} if args.no_progress or args.json else {}
        config = TrainConfig.from_file(args.config, args.overrides, flags)
        try:
            result = train(config)
        except distributed.LostContact as exc:  # end now: the broken process group can hang the normal exit
            import os
            import sys

            print(f"koba lm: error: {exc}", file=sys.stderr, flush=True)
            os._exit(2)
    elif args.lm_command == "expand":
        from koba_ros.nlp.expand_checkpoint import expand_checkpoint

        result = expand_checkpoint(args.checkpoint, args.out, args.width_factor, args.layers, args.data,
                                   args.eval_tokens, args.noise, args.seed)
        if not args.json:
            check = (f"; loss on {result['data']} {result['loss_before']:.6f} -> {result['loss_after']:.6f}"
                     if "loss_before" in result else f"; logits equal within {result['max_logit_difference']:.1e} "
                     "(give --data to check a text's loss)")
            lr = f"; suggested lr {result['suggested_lr']:.3g}" if result["suggested_lr"] else ""
            print(f"{result['out']}: {result['parameters_before']:,} -> {result['parameters_after']:,} parameters "
                  f"(d {result['d_model'][0]} -> {result['d_model'][1]}, {result['n_layers'][0]} -> "
                  f"{result['n_layers'][1]} layers){check}{lr}; train on with {init_from_hint(result['out'])}")
            return 0
    elif args.lm_command == "gqa":
        from koba_ros.nlp.gqa_conversion import convert_checkpoint

        result = convert_checkpoint(args.checkpoint, args.out, args.kv_heads, args.data, args.eval_tokens)
        if not args.json:
            loss = (f"; loss on {result['data']} {result['loss_before']:.4f} -> {result['loss_after']:.4f}"
                    if "loss_before" in result else "")
            print(f"{result['out']}: {result['kv_heads'][0]} -> {result['kv_heads'][1]} key/value heads, "
                  f"{result['parameters_before']:,} -> {result['parameters_after']:,} parameters{loss}; uptrain "
                  f"(about 5 % of the source's steps) with {init_from_hint(result['out'])}")
            return 0
    elif args.lm_command in ("export", "import"):
        from koba_ros.nlp import hf_gpt2

        result = (hf_gpt2.export_checkpoint(args.checkpoint, args.out) if args.lm_command == "export"
                  else hf_gpt2.import_pretrained(args.hf, args.out, args.tokenizer, args.vocab, args.merges))
        if not args.json:
            print(f"{result['out']}: {result['parameters']:,} parameters from {result['source']} "
                  f"({result['tokenizer']} tokenizer; logits equal within {result['max_logit_difference']:.1e})")
            return 0
    elif args.lm_command == "sample":
        from koba_ros.nlp.sampling import sample

        require_device(args.device)
        if args.json:
            result = sample(args.checkpoint, args.prompt, args.tokens, args.temperature, args.top_k, args.seed,
                            args.device, use_cache=not args.no_cache, top_p=args.top_p)
        else:  # the prompt, then the continuation as it is drawn

            sample(args.checkpoint, args.prompt, args.tokens, args.temperature, args.top_k, args.seed, args.device,
                   use_cache=not args.no_cache, top_p=args.top_p, write=lambda piece: print(piece, end="", flush=True))
            print()
            return 0
    elif args.lm_command == "eval":
        from koba_ros.nlp.evaluation import evaluate_checkpoint

        require_device(args.device)
        result = evaluate_checkpoint(args.checkpoint, args.data, args.seq_len, args.stride, args.batch_size,
                                     args.device, args.per_document, args.split)
        if "notice" in result:  # on stderr: stdout stays the result alone
            import sys

            print(f"koba lm eval: notice: {result['notice']}", file=sys.stderr, flush=True)
        if not args.json:
            part = f" (the run's held-out last {result['val_fraction']:.0%})" if result["split"] == "val" else ""
            print(f"{result['data']}{part}: loss {result['loss']:.4f} nats/token, perplexity "
                  f"{result['perplexity']:.3f}, {result['bits_per_byte']:.4f} bits/byte over "
                  f"{result['scored_tokens']} tokens "
                  f"(windows of {result['seq_len']}, stride {result['stride']})")
            return 0
    elif args.lm_command == "influence" and args.checkpoint:
        from koba_ros.errors import KobaError
        from koba_ros.nlp.lm_influence import document_influence

        if not args.data:
            raise KobaError("influence --checkpoint needs --data, the target text")
        if args.val:
            raise KobaError("influence: --val goes with --train (a labelled set); with --checkpoint give --data")
        # the run is already trained: options that train the --train classifier would be silently ignored
        given = [f"--{name.replace('_', '-')}" for name in ("epochs", "embed", "hidden", "mask_seeds", "seed")
                 if getattr(args, name) is not None]
        if given:
            raise KobaError(f"influence: {', '.join(given)} train the --train classifier; with --checkpoint the "
                            "run is already trained (runs with other model.turnover_seed average like --mask-seeds)")
        result = document_influence(args.checkpoint, args.data, args.out)
        if not args.json:
            print(f"{result['csv']}: {result['documents']} training documents, {result['harmful']} raise the loss on "
                  f"{result['target']} ({result['target_loss']:.4f} nats/token). Most helpful:")
            for row in result["most_helpful"][:5]:
                print(f"  {row['influence_on_target']:+.5f}  {row['name']}")
            print("Most harmful:")
            for row in result["most_harmful"][:5]:
                print(f"  {row['influence_on_target']:+.5f}  {row['name']}")
            return 0
    elif args.lm_command == "influence":
        from koba_ros.errors import KobaError
        from koba_ros.nlp.influence_report import influence_report
        from koba_ros.nlp.text_classifier import ClassifierConfig

        if args.data:
            raise KobaError("influence: --data goes with --checkpoint (an LM run); with --train give --val")

        given = {"epochs": args.epochs, "embed": args.embed, "hidden": args.hidden}
        config = ClassifierConfig(**{k: v for k, v in given.items() if v is not None})
        result = influence_report(args.train, args.out, args.val, config, args.seed or 0,
                                  1 if args.mask_seeds is None else args.mask_seeds)
        if not args.json:
            val = (f"; {result['harmful_to_val']} lines raise the loss on {result['val']}"
                   if "val" in result else "")
            print(f"{result['csv']}: {result['lines']} lines, {result['classes']} labels{val}. Most likely "
                  "mislabeled (self-influence):")
            for row in result["most_suspicious"]:
                print(f"  line {row['line']:>6}  {row['self_influence']:8.3f}  {row['label']}\t{row['text']}")
            return 0
    elif args.lm_command == "tickets":
        from koba_ros.nlp.ticket_ensemble import TicketConfig, build_ensemble

        config = TicketConfig(members=args.members, sparsity=args.sparsity, l1=args.l1, epochs=args.epochs,
                              pretrain_steps=args.pretrain_steps)
        result = build_ensemble(args.train, args.out, args.val, args.unlabelled, config, args.seed)
        if not args.json:
            val = (f"; on {result['val']}: ensemble {result['val_accuracy']:.3f}, mean member "
                   f"{result['val_mean_member_accuracy']:.3f}" if "val" in result else "")
            print(f"{result['out']}: {result['members']} members at sparsity {result['member_sparsity']}, "
                  f"{result['labels']} labels, {result['vocabulary']} words{val}")
            return 0
    elif args.lm_command == "classify":
        from koba_ros.nlp.ticket_ensemble import classify

        rows = classify(args.model, args.texts)
        if not args.json:
            for row in rows:
                print(f"{row['label']}\t{row['probability']:.3f}\t{row['text']}")
            return 0
        result = {"predictions": rows}
    elif args.lm_command == "repro":
        from koba_ros.nlp.repro import run_repro

        require_device(args.device)
        result = run_repro(args.name, quick=args.quick, device=args.device, out=args.out, seed=args.seed,
                           size=args.size or None)
    else:
        from koba_ros.nlp.bench import run_bench

        result = run_bench(size=args.size, device=args.device, steps=args.steps,
                           variants=[v for v in args.variants.split(",") if v], peak_tflops=args.peak_tflops,
                           out=args.out, profile_steps=args.profile_steps)
    if args.json:
        print_json(result)
    else:
        print(json.dumps(result, indent=1))
    code = result.get("exit_code", 0) if args.lm_command == "train" else 0  # 130 / 143: stopped by a signal
    if args.lm_command == "train" and result["world_size"] > 1:
        # Every rank is past the last barrier and the process group is destroyed: leave without the interpreter's
        # finalization, which tears torch's distributed state down in no fixed order. Session 18: 2 of 300 FSDP
        # fp16 runs on the loaded 2-core machine aborted there ("terminate called without an active exception"),
        # after printing their results, and torchrun reported the job failed (docs/nlp.md "Session 18").
        import os
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
