"""record_audio.py: record a clip from a microphone into a WAV file (needs pyaudio)."""
import argparse
import time
from typing import List, Optional

import numpy as np

from mser import mic
from mser.audio import resample
from mser.cli.common import HelpFormatter, exits_cleanly
from mser.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Record audio from a microphone into a WAV file.",
                                     formatter_class=HelpFormatter)
    add_device_arguments(parser)
    parser.add_argument("--record_seconds", type=float, default=3.0, help="length of the recording in seconds")
    parser.add_argument("--sample_rate", type=int, default=16000, help="sample rate of the WAV file in Hz")
    parser.add_argument("--output", default=None,
                        help="WAV file to write (default: dataset/recordings/<date>_<time>.wav)")
    return parser


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list_devices", action="store_true", help="list the input devices and exit")
    parser.add_argument("--device", type=int, default=None,
                        help="index of the input device (see --list_devices; default: the system default)")


def print_devices(pa) -> None:
    devices = mic.list_input_devices(pa)
    if not devices:
        print(f"no input devices; PortAudio sees: {mic.all_device_names(pa)}")
    for device in devices:
        print(device.describe())


def record_clip(pa, device: mic.InputDevice, seconds: float, sample_rate: int) -> np.ndarray:
    """Record at `sample_rate`, or at the device's rate and resample. Returns int16 (samples,)."""
    rate = mic.supported_rate(pa, device, sample_rate)
    samples = mic.record(pa, device, seconds, rate)
    if rate != sample_rate:
        converted = resample(samples.astype(np.float32) / 32768.0, rate, sample_rate)
        samples = np.clip(np.round(converted * 32768.0), -32768, 32767).astype(np.int16)
    return samples


@exits_cleanly
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.record_seconds <= 0:
        raise ConfigError(f"--record_seconds must be positive, got {args.record_seconds}")
    with mic.open_pyaudio() as pa:
        if args.list_devices:
            print_devices(pa)
            return 0
        device = mic.choose_input_device(pa, args.device)
        output = args.output or time.strftime("dataset/recordings/%Y%m%d_%H%M%S.wav")
        print(f"recording {args.record_seconds:g} s from {device.describe()} ...", flush=True)
        samples = record_clip(pa, device, args.record_seconds, args.sample_rate)
    mic.write_wav(output, samples, args.sample_rate)
    print(f"saved {output}: {len(samples) / args.sample_rate:.2f} s, {args.sample_rate} Hz, "
          f"level {mic.rms_dbfs(samples):.1f} dBFS")
    return 0
