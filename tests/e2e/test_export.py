"""`majlis export` on a real recorded replay: one M4A, signed with C2PA, read back with c2pa-python.

One server run records two spaces: one talked in and ended, one left live. The server is then
stopped and `majlis export` runs as its own process on the data folder, as an operator would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import c2pa
import m3u8
import numpy as np
import pytest

import majlis
from tests.support.audio import RATE, Samples, decode_mp4, tone_power
from tests.support.certs import LEAF_NAME, Pki, make_pki
from tests.support.server import majlis_server, stop
from tests.support.whip import ToneTrack, publish

TONE = 1000.0
TITLE = "مجلس: export test"
AAC_FRAME = 1024


@dataclass(frozen=True)
class Recorded:
    data: Path
    space: dict[str, Any]  # GET /api/spaces/<id> after the end
    replay: bytes  # init + every replay segment, as served over HTTP
    segment_count: int
    live_id: str  # a space left live when the server stopped
    while_serving: subprocess.CompletedProcess[str]  # an export run while the server ran


async def _record(data: Path) -> Recorded:
    with majlis_server(data) as server:
        ended, live = server.create_space(TITLE), server.create_space("Still live")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            pubs = [
                await publish(http, server.base, s["whip_url"], s["host_token"], ToneTrack(f))
                for s, f in ((ended, TONE), (live, 440.0))
            ]
            await asyncio.sleep(3.0)  # about three 1 s segments of tone
            for pub in pubs:
                await pub.pc.close()
            headers = {"Authorization": f"Bearer {ended['host_token']}"}
            url = f"{server.base}/api/spaces/{ended['id']}"
            async with http.post(url + "/end", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(url) as resp:
                space = await resp.json()
            playlist_url = server.base + ended["playlist_url"]
            async with http.get(playlist_url) as resp:
                playlist = m3u8.loads(await resp.text())
            assert playlist.is_endlist
            base = playlist_url.rsplit("/", 1)[0]
            blobs = []
            for uri in ["init.mp4", *(s.uri for s in playlist.segments)]:
                async with http.get(f"{base}/{uri}") as resp:
                    assert resp.status == 200
                    blobs.append(await resp.read())
        out = data.parent / "while-serving.m4a"
        serving = await asyncio.to_thread(export, data, ended["id"], out, "--no-sign")
        assert stop(server.process) == 0, server.log()
    return Recorded(data, space, b"".join(blobs), len(playlist.segments), live["id"], serving)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return asyncio.run(_record(tmp_path_factory.mktemp("export") / "data"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def export(
    data: Path, space_id: str, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "majlis.cli", "export", "--data", str(data), *args]
    # Space ids may start with "-": "--" ends the options, as an operator would type it.
    return subprocess.run(
        [*cmd, "--", space_id, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def read(path: Path, trust: Path | None = None) -> c2pa.Reader:
    context = None
    if trust is not None:
        settings = {"trust": {"trust_anchors": trust.read_text()}, "verify": {"verify_trust": True}}
        context = c2pa.Context(c2pa.Settings.from_dict(settings))
    with open(path, "rb") as f:
        if context is None:
            return c2pa.Reader("audio/mp4", f)
        return c2pa.Reader("audio/mp4", f, None, context)


def assertion(manifest: dict[str, Any], label: str) -> dict[str, Any]:
    found = [a["data"] for a in manifest["assertions"] if a["label"] == label]
    assert len(found) == 1, [a["label"] for a in manifest["assertions"]]
    data: dict[str, Any] = found[0]
    return data


def failure_codes(reader: c2pa.Reader) -> set[str]:
    results = reader.get_validation_results() or {}
    return {f["code"] for f in results.get("activeManifest", {}).get("failure", [])}


@pytest.fixture(scope="module")
def signed(recorded: Recorded, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "replay.m4a"
    keys = ("--cert", str(pki.cert), "--key", str(pki.key))
    result = export(recorded.data, recorded.space["id"], out, *keys)
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr, "the progress bar reaches the end"
    assert f"{recorded.segment_count} segments" in result.stdout
    assert "signed (C2PA)" in result.stdout
    return out


def test_manifest_names_majlis_and_records_the_space(recorded: Recorded, signed: Path) -> None:
    with read(signed) as reader:
        manifest = reader.get_active_manifest()
    assert manifest is not None
    generator = manifest["claim_generator_info"][0]
    assert (generator["name"], generator["version"]) == ("Majlis", majlis.__version__)
    assert manifest["title"] == TITLE
    assert manifest["signature_info"]["common_name"] == LEAF_NAME
    actions = assertion(manifest, "c2pa.actions.v2")["actions"]
    assert [a["action"] for a in actions] == ["c2pa.created", "c2pa.published"]

    record = assertion(manifest, "org.majlis.provenance")
    space = recorded.space
    assert record["space_id"] == space["id"]
    assert record["title"] == TITLE
    for key in ("started_at", "ended_at"):
        assert record[key].endswith("Z")
        at = dt.datetime.fromisoformat(record[key]).timestamp()
        assert abs(at - space[key]) < 1e-5, (key, record[key], space[key])
    assert [a["when"] for a in actions] == [record["started_at"], record["ended_at"]]
    assert record["segments"] == recorded.segment_count >= 3
    assert (record["first_segment"], record["last_segment"]) == (0, recorded.segment_count - 1)
    assert record["discontinuities"] == 0


def test_manifest_carries_the_signed_replay_provenance(recorded: Recorded, signed: Path) -> None:
    path = recorded.data / "spaces" / recorded.space["id"] / "provenance.json"
    with read(signed) as reader:
        manifest = reader.get_active_manifest()
    assert manifest is not None
    record = assertion(manifest, "org.majlis.provenance")["replay_provenance"]
    if not path.exists():
        assert record is None
        pytest.skip("this server build writes no provenance.json")
    document = json.loads(path.read_bytes())
    assert document["signature"], "an ended space's provenance is signed"
    assert record == {
        "document": "provenance.json",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "chain_head": document["chain_head"],
        "key_id": document["key_id"],
        "signature": document["signature"],
    }


def test_validates_and_is_trusted_with_the_test_ca(signed: Path, pki: Pki) -> None:
    with read(signed) as reader:
        assert reader.get_validation_state() == "Valid"
        # Valid but not trusted: the test CA is nobody's anchor by default.
        assert failure_codes(reader) == {"signingCredential.untrusted"}
    with read(signed, trust=pki.ca) as reader:
        assert reader.get_validation_state() == "Trusted"
        assert failure_codes(reader) == set()


def _decode(path_or_bytes: Path | bytes) -> tuple[Samples, int]:
    source: Any = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with av.open(source) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        packets = stream.frames
    return np.concatenate(frames).astype(np.float32), packets


def test_audio_is_the_replay_sample_for_sample(recorded: Recorded, signed: Path) -> None:
    exported, packets = _decode(signed)
    replay = decode_mp4(recorded.replay)
    assert exported.size == replay.size
    assert np.array_equal(exported, replay), "a remux must not change a single sample"
    # One AAC frame per packet; the decoder drops the first frame's 1024 priming samples.
    assert packets * AAC_FRAME - AAC_FRAME == exported.size
    with av.open(str(signed)) as container:
        assert container.format.name.startswith("mov,mp4,m4a")
        assert container.duration is not None
        assert abs(container.duration / 1e6 - exported.size / RATE) < 0.002
    middle = exported[RATE // 2 : -RATE // 4]
    assert middle.size > RATE
    assert tone_power(middle, TONE) > 0.9, "the recorded tone is in the export"
    assert tone_power(middle, 440.0) < 0.01, "nothing of the other space leaked in"


def test_one_flipped_audio_byte_is_a_hash_mismatch(signed: Path, tmp_path: Path) -> None:
    data = bytearray(signed.read_bytes())
    mdat = data.find(b"mdat")
    assert mdat > 0
    data[mdat + 200] ^= 0x01
    tampered = tmp_path / "tampered.m4a"
    tampered.write_bytes(bytes(data))
    with read(tampered) as reader:
        assert reader.get_validation_state() == "Invalid"
        assert "assertion.bmffHash.mismatch" in failure_codes(reader)


def test_certificate_from_the_environment(recorded: Recorded, pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "env.m4a"
    env = {"MAJLIS_C2PA_CERT": str(pki.cert), "MAJLIS_C2PA_KEY": str(pki.key)}
    result = export(recorded.data, recorded.space["id"], out, env=env)
    assert result.returncode == 0, result.stderr
    with read(out, trust=pki.ca) as reader:
        assert reader.get_validation_state() == "Trusted"


def test_without_a_certificate_refuses_unless_no_sign(recorded: Recorded, tmp_path: Path) -> None:
    out = tmp_path / "plain.m4a"
    env = {"MAJLIS_C2PA_CERT": "", "MAJLIS_C2PA_KEY": ""}
    result = export(recorded.data, recorded.space["id"], out, env=env)
    assert result.returncode == 2
    assert "no C2PA signing certificate" in result.stderr
    assert not out.exists()

    result = export(recorded.data, recorded.space["id"], out, "--no-sign", env=env)
    assert result.returncode == 0, result.stderr
    assert "unsigned" in result.stdout
    with pytest.raises(c2pa.C2paError), read(out):
        pass
    assert np.array_equal(_decode(out)[0], decode_mp4(recorded.replay))


def test_provenance_document_is_recorded_verbatim(
    recorded: Recorded, pki: Pki, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(recorded.data, data)
    document = {"chain_head": "ab" * 32, "key_id": "k1", "signature": "c2lnbmF0dXJl", "x": 1}
    raw = json.dumps(document).encode()
    (data / "spaces" / recorded.space["id"] / "provenance.json").write_bytes(raw)
    out = tmp_path / "out.m4a"
    result = export(data, recorded.space["id"], out, "--cert", str(pki.cert), "--key", str(pki.key))
    assert result.returncode == 0, result.stderr
    with read(out) as reader:
        manifest = reader.get_active_manifest()
    assert manifest is not None
    assert assertion(manifest, "org.majlis.provenance")["replay_provenance"] == {
        "document": "provenance.json",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "chain_head": "ab" * 32,
        "key_id": "k1",
        "signature": "c2lnbmF0dXJl",
    }


def test_export_while_the_server_runs(recorded: Recorded) -> None:
    # The database is opened read-only next to the server's own connection.
    assert recorded.while_serving.returncode == 0, recorded.while_serving.stderr
    exported = decode_mp4((recorded.data.parent / "while-serving.m4a").read_bytes())
    assert np.array_equal(exported, decode_mp4(recorded.replay))


def _refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_refusals(recorded: Recorded, pki: Pki, tmp_path: Path) -> None:
    keys = ("--cert", str(pki.cert), "--key", str(pki.key))
    out = tmp_path / "x.m4a"
    data = recorded.data
    _refused(export(data, "nosuchspace", out, *keys), r"no space nosuchspace in ")
    _refused(export(data, recorded.live_id, out, *keys), r"is live: only an ended space")
    _refused(export(data, "../etc", out, *keys), r"'\.\./etc' is not a space id")
    _refused(export(tmp_path, recorded.space["id"], out, *keys), r"no Majlis database in ")
    _refused(
        export(data, recorded.space["id"], tmp_path / "missing" / "x.m4a", *keys),
        r"no folder .*missing",
    )
    no_key = ("--cert", str(pki.cert), "--key", str(tmp_path / "absent.pem"))
    _refused(export(data, recorded.space["id"], out, *no_key), r"cannot read .*absent\.pem")
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(pki.cert.read_bytes())  # a certificate where the key should be
    _refused(
        export(data, recorded.space["id"], out, "--cert", str(pki.cert), "--key", str(wrong)),
        r"not an unencrypted PEM key",
    )
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong.pem"], "no temporary left"


def test_a_key_that_does_not_match_the_certificate(
    recorded: Recorded, pki: Pki, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other")
    out = tmp_path / "x.m4a"
    keys = ("--cert", str(pki.cert), "--key", str(other.key))
    _refused(export(recorded.data, recorded.space["id"], out, *keys), r"C2PA signing failed")
    assert not out.exists()
    assert not list(tmp_path.glob(".x.m4a*")), "no temporary left"


@pytest.fixture(autouse=True)
def _no_stray_files(recorded: Recorded) -> Iterator[None]:
    # The export reads the data folder and never writes into it.
    folder = recorded.data / "spaces" / recorded.space["id"]
    before = sorted(p.name for p in folder.rglob("*"))
    yield
    assert sorted(p.name for p in folder.rglob("*")) == before


async def _talk(base: str, space: dict[str, Any], freq: float, seconds: float) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        pub = await publish(http, base, space["whip_url"], space["host_token"], ToneTrack(freq))
        await asyncio.sleep(seconds)
        await pub.pc.close()


async def test_a_replay_across_a_server_restart_exports_whole(pki: Pki, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with majlis_server(data) as first:
        space = first.create_space("Across a restart")
        await _talk(first.base, space, 440.0, 2.5)
        assert stop(first.process) == 0, first.log()
    with majlis_server(data) as second:
        await _talk(second.base, space, 880.0, 2.5)
        async with aiohttp.ClientSession() as http:
            url = f"{second.base}/api/spaces/{space['id']}/end"
            headers = {"Authorization": f"Bearer {space['host_token']}"}
            async with http.post(url, headers=headers) as resp:
                assert resp.status == 200
    out = tmp_path / "restart.m4a"
    keys = ("--cert", str(pki.cert), "--key", str(pki.key))
    result = await asyncio.to_thread(export, data, space["id"], out, *keys)
    assert result.returncode == 0, result.stderr

    with read(out, trust=pki.ca) as reader:
        assert reader.get_validation_state() == "Trusted"
        manifest = reader.get_active_manifest()
    assert manifest is not None
    assert assertion(manifest, "org.majlis.provenance")["discontinuities"] == 1
    folder = data / "spaces" / space["id"]
    index = [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]
    cut = [e["discontinuity"] for e in index].index(True)
    init = (folder / "init.mp4").read_bytes()

    def run(entries: list[dict[str, Any]]) -> Samples:
        return decode_mp4(
            init + b"".join((folder / "s" / f"{e['msn']}.m4s").read_bytes() for e in entries)
        )

    before, after = run(index[:cut]), run(index[cut:])
    exported, _ = _decode(out)
    # A player decodes each side of a discontinuity on its own, dropping the new encoder's
    # priming frame; the export keeps every frame, that one included, in one timeline.
    assert exported.size == before.size + AAC_FRAME + after.size
    assert np.array_equal(exported[: before.size], before)
    resumed = exported[before.size + AAC_FRAME :]
    # Right after the boundary the decoder overlaps the new encoder's first frame with the
    # old encoder's last one instead of silence; from then on they differ by rounding only.
    # Except in bands the encoder coded as noise (PNS): the decoder fills them from a random
    # generator whose state carries over from everything decoded before, so two decoders
    # with different histories differ there, a little, forever; how much depends on how much
    # the encoder coded as noise (more when a loaded machine made the speaker stutter). Hence
    # the difference's energy against the signal's: a frame out of place, even one sample of
    # shift, would put it above -20 dB for this tone; rounding and PNS keep it below -40 dB.
    settled = 2 * AAC_FRAME
    diff = np.abs(resumed - after)[settled:]
    ratio = float(np.sqrt(np.mean(diff**2)) / np.sqrt(np.mean(after[settled:] ** 2)))
    assert ratio < 0.01, (ratio, float(diff.max()))
    assert float(diff.max()) < 0.05
    assert float(np.abs(resumed - after)[:settled].max()) < 0.05
    assert tone_power(before[RATE // 2 :], 440.0) > 0.5
    assert tone_power(resumed[: -RATE // 4], 880.0) > 0.5


def test_an_edited_recording_is_not_exported(recorded: Recorded, tmp_path: Path) -> None:
    """The export vouches for the signed replay: it refuses a recording that differs from it."""
    data = tmp_path / "data"
    shutil.copytree(recorded.data, data)
    folder = data / "spaces" / recorded.space["id"]
    if not (folder / "provenance.json").exists():
        pytest.skip("this server build writes no provenance.json")
    out = tmp_path / "x.m4a"
    segment = folder / "s" / "1.m4s"
    original = segment.read_bytes()
    changed = bytearray(original)
    changed[-10] ^= 0x01  # inside the last mdat: still decodes, but not what was signed
    segment.write_bytes(bytes(changed))
    _refused(
        export(data, recorded.space["id"], out, "--no-sign"), r"segment 1 differs from its hash"
    )
    segment.write_bytes(original)
    assert export(data, recorded.space["id"], out, "--no-sign").returncode == 0
    out.unlink()
    segment.unlink()
    _refused(export(data, recorded.space["id"], out, "--no-sign"), r"segment 1 is missing from")
    assert not out.exists()
