"""Run upstream macls (and report upstream mser) for tools/benchmark.py --peers.

Runs under the peer virtual environment's Python (tools/benchmark.py makes it: macls from PyPI,
our torch through a .pth file), never under ours: it must not import this repository's `mser`.
It reads one JSON command per line on stdin and answers each with one JSON line on the stdout it
was started with; everything the libraries print (macls logs to stdout) goes to stderr instead.

Commands (each answers {"ok": true, ...} or {"ok": false, "error": "one line"}):
  setup        {"train_list", "test_list", "label_list", "batch_size", "num_workers", "threads",
                "use_gpu"}: MAClsTrainer on macls's shipped ecapa_tdnn.yml (EcapaTdnn C=512 on
                80-bin kaldi Fbank) with these lists; answers versions and the parameter count
  warmup       one untimed training step (allocator, oneDNN primitives)
  train_epoch  one epoch through MAClsTrainer's own epoch loop; answers clips and seconds
  predictor    {"model_dir"}: saves the trained weights there, loads MAClsPredictor from them
  predict      {"paths"}: MAClsPredictor.predict(path) for each; answers ms per call
  model        {"paths"}: the model call of MAClsPredictor.predict alone (features made first); ms per call
  quit
"""
import json
import os
import sys
import time

PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)          # library output (print, loguru to sys.stdout) goes to stderr
sys.stdout = sys.stderr

import torch  # noqa: E402
import yaml  # noqa: E402


class NoWriter:
    """Stands in for macls's VisualDL LogWriter: nothing is logged to disk."""

    def add_scalar(self, *args, **kwargs):
        pass


COMMANDS = ("setup", "warmup", "train_epoch", "predictor", "predict", "model")


class Peer:
    def __init__(self):
        self.trainer = None
        self.macls_predictor = None
        self.config = None

    def setup(self, command):
        import macls
        from macls.trainer import MAClsTrainer
        torch.set_num_threads(int(command["threads"]))
        with open(os.path.join(os.path.dirname(macls.__file__), "configs", "ecapa_tdnn.yml"), encoding="utf-8") as f:
            config = yaml.safe_load(f)
        dataset_conf = config["dataset_conf"]
        dataset_conf["train_list"], dataset_conf["test_list"] = command["train_list"], command["test_list"]
        dataset_conf["label_list_path"] = command["label_list"]
        dataset_conf["dataset"]["use_dB_normalization"] = False   # as ours: same work per clip
        dataset_conf["dataLoader"].update(batch_size=int(command["batch_size"]), drop_last=False,
                                          num_workers=int(command["num_workers"]))
        dataset_conf["eval_conf"]["batch_size"] = int(command["batch_size"])
        config["train_conf"].update(max_epoch=1, log_interval=10 ** 9)
        self.config = config
        self.trainer = MAClsTrainer(configs=config, use_gpu=bool(command["use_gpu"]), log_level="warning")
        self.trainer._MAClsTrainer__setup_dataloader(is_train=True)
        self.trainer._MAClsTrainer__setup_model(input_size=self.trainer.audio_featurizer.feature_dim, is_train=True)
        self.trainer.max_step, self.trainer.train_step = 10 ** 9, 0
        model = self.trainer.model
        method = config["preprocess_conf"]
        return {"versions": versions(), "upstream_mser": upstream_mser(),
                "parameters": sum(p.numel() for p in model.parameters()),
                "threads": torch.get_num_threads(),
                "setup": f"{type(model).__name__}(channels={model.channels}) on {method['feature_method']}"
                         f"({', '.join(f'{k}={v}' for k, v in method['method_args'].items())}), "
                         f"{config['optimizer_conf']['optimizer']}, fp32"}

    def warmup(self, command):
        features, labels, _ = next(iter(self.trainer.train_loader))
        model, optimizer = self.trainer.model, self.trainer.optimizer
        model.train()
        self.trainer.loss(model(features.to(self.trainer.device)), labels.to(self.trainer.device)).backward()
        optimizer.zero_grad()
        return {}

    def train_epoch(self, command):
        self.trainer.model.train()
        started = time.perf_counter()
        self.trainer._MAClsTrainer__train_epoch(epoch_id=1, local_rank=0, writer=NoWriter(), nranks=1)
        return {"clips": len(self.trainer.train_dataset), "seconds": time.perf_counter() - started}

    def predictor(self, command):
        from macls.predict import MAClsPredictor
        os.makedirs(command["model_dir"], exist_ok=True)
        torch.save(self.trainer.model.state_dict(), os.path.join(command["model_dir"], "model.pth"))
        self.macls_predictor = MAClsPredictor(configs=self.config, model_path=command["model_dir"],
                                        use_gpu=bool(self.trainer.use_gpu), log_level="warning")
        return {}

    def predict(self, command):
        milliseconds = []
        for path in command["paths"]:
            started = time.perf_counter()
            self.macls_predictor.predict(path)
            milliseconds.append((time.perf_counter() - started) * 1000)
        return {"ms": milliseconds}

    def model(self, command):
        """ms of the model call alone, as MAClsPredictor.predict makes it (autograd on), on the
        features of each clip (computed first, not timed)."""
        predictor = self.macls_predictor
        milliseconds = []
        for path in command["paths"]:
            samples = torch.tensor(predictor._load_audio(path).samples, dtype=torch.float32).unsqueeze(0)
            features = predictor._audio_featurizer(samples).to(predictor.device)
            started = time.perf_counter()
            predictor.predictor(features)
            milliseconds.append((time.perf_counter() - started) * 1000)
        return {"ms": milliseconds}


def versions():
    from importlib.metadata import version
    names = ("macls", "yeaudio", "torchaudio", "numpy")
    return {"torch": torch.__version__, "torch_path": os.path.dirname(torch.__file__),
            **{name: version(name) for name in names}}


def upstream_mser():
    """What upstream mser offers to compare, or why it is not there."""
    try:
        from importlib.metadata import version

        import mser.models
    except Exception as e:   # not installed, or a dependency it imports is missing
        return {"error": f"{type(e).__name__}: {e}"}
    models = sorted(name for name in dir(mser.models) if name[:1].isupper() and name != "BaseModel")
    return {"version": version("mser"), "models": models}


def main():
    peer = Peer()
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        try:
            if command["cmd"] not in COMMANDS:
                raise ValueError(f"unknown command; one of {', '.join(COMMANDS)}, quit")
            answer = {"ok": True, **getattr(peer, command["cmd"])(command)}
        except Exception as e:   # answered as one line; the benchmark carries on without the peer
            answer = {"ok": False, "error": f"{command['cmd']}: {type(e).__name__}: {e}".splitlines()[0]}
        PROTOCOL.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
