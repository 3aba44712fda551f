"""Settings of the frame descriptors computed from the shared STFT (or its framing).

Each part follows ``librosa.feature`` (0.11) by default: ``rms`` from the spectrum, in dB;
``centroid``, ``bandwidth``, ``rolloff`` and ``contrast`` on the magnitude (``power=1``);
``flatness`` on the power spectrum; ``zcr`` on the waveform framed like the STFT. Every part
has ``subsample`` (keep every d-th frame) and ``stft`` (``None`` = ``FeatureConfig.stft``).
"""

from dataclasses import dataclass

from aad.features.stft_config import STFTConfig

SPECTRAL_NAMES = ("rms", "centroid", "bandwidth", "rolloff", "flatness", "contrast", "zcr")
SPECTRAL_LOG_MODES = ("db", "none")


def _positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{where}.{name} must be > 0, got {value}")


def _log_mode(where: str, log: str) -> None:
    if log not in SPECTRAL_LOG_MODES:
        raise ValueError(f"{where}.log={log!r} not in {SPECTRAL_LOG_MODES}")


@dataclass
class RMSConfig:
    """Frame RMS from the power spectrum (``librosa.feature.rms(S=|X|, frame_length=n_fft)``).

    ``log="db"``: ``20 * log10(max(rms, amin))`` (``amplitude_to_db``, ref 1, no top_db; the
    default floor 1e-5 is -100 dB); ``"none"``: linear RMS.
    """

    log: str = "db"
    amin: float = 1e-5
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        _log_mode("rms", self.log)
        _positive("rms", amin=self.amin)


@dataclass
class CentroidConfig:
    """Spectral centroid in Hz of ``|X| ** power`` (``librosa.feature.spectral_centroid``)."""

    power: float = 1.0
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        _positive("centroid", power=self.power)


@dataclass
class BandwidthConfig:
    """Order-``p`` spectral bandwidth in Hz around the centroid, on the per-frame L1-normalised
    ``|X| ** power`` (``librosa.feature.spectral_bandwidth(p=2, norm=True)``)."""

    p: float = 2.0
    power: float = 1.0
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        _positive("bandwidth", p=self.p, power=self.power)


@dataclass
class RolloffConfig:
    """Frequency in Hz of the first bin where the cumulative ``|X| ** power`` reaches
    ``roll_percent`` of the frame total (``librosa.feature.spectral_rolloff``)."""

    roll_percent: float = 0.85
    power: float = 1.0
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        if not 0.0 < self.roll_percent < 1.0:
            raise ValueError(f"rolloff.roll_percent must be in (0, 1), got {self.roll_percent}")
        _positive("rolloff", power=self.power)


@dataclass
class FlatnessConfig:
    """Spectral flatness: geometric over arithmetic mean of ``max(|X| ** power, amin)``
    (``librosa.feature.spectral_flatness``). ``log="db"`` returns ``10 * log10`` of it."""

    amin: float = 1e-10
    power: float = 2.0
    log: str = "none"
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        _positive("flatness", amin=self.amin, power=self.power)
        _log_mode("flatness", self.log)


@dataclass
class ContrastConfig:
    """Spectral contrast, ``n_bands + 1`` values per frame (``librosa.feature.spectral_contrast``).

    Octave bands from ``fmin`` (the first band is 0 to ``fmin``, the last runs to Nyquist);
    per band the mean of the top and bottom ``quantile`` of the sorted ``|X| ** power`` bins;
    ``linear=False``: ``power_to_db(peak) - power_to_db(valley)`` (amin 1e-10, ``top_db``
    floor per clip, as librosa applies it to one clip's array), ``linear=True``: the difference.
    """

    fmin: float = 200.0
    n_bands: int = 6
    quantile: float = 0.02
    linear: bool = False
    top_db: float | None = 80.0
    power: float = 1.0
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        _positive("contrast", fmin=self.fmin, power=self.power)
        if self.n_bands < 1:
            raise ValueError(f"contrast.n_bands must be >= 1, got {self.n_bands}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"contrast.quantile must be in (0, 1), got {self.quantile}")
        if self.top_db is not None and self.top_db < 0:
            raise ValueError(f"contrast.top_db must be None or >= 0, got {self.top_db}")
        highest = self.fmin * 2.0 ** (self.n_bands - 1)
        if highest >= 0.5 * sample_rate:
            raise ValueError(
                f"contrast band edge {highest:g} Hz (fmin={self.fmin:g} * 2 ** (n_bands - 1)) "
                f"reaches Nyquist ({sample_rate / 2:g} Hz): lower fmin or n_bands"
            )


@dataclass
class ZCRConfig:
    """Zero-crossing rate of the waveform framed with the STFT's frame length, hop and centring
    (``librosa.feature.zero_crossing_rate(frame_length=n_fft, hop_length=hop, center=True)``:
    edge padding, ``|y| <= threshold`` counts as 0, crossings / frame length)."""

    threshold: float = 1e-10
    subsample: int = 1
    stft: STFTConfig | None = None

    def validate(self, sample_rate: int) -> None:
        if self.threshold < 0:
            raise ValueError(f"zcr.threshold must be >= 0, got {self.threshold}")


SPECTRAL_CONFIGS: dict[str, type] = {
    "rms": RMSConfig,
    "centroid": CentroidConfig,
    "bandwidth": BandwidthConfig,
    "rolloff": RolloffConfig,
    "flatness": FlatnessConfig,
    "contrast": ContrastConfig,
    "zcr": ZCRConfig,
}
