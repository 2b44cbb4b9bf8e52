"""Payloads of the call load generator: a realistic ~4 KB SDP and ICE candidate
strings, each carrying its sender's ``ts=<perf_counter_ns>`` so the receiver can
turn it into a relay latency (the server relays the payload unchanged)."""

from __future__ import annotations

_SDP_HEAD = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=- ts="
_SDP_BODY = (
    "\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS 1f3c9b8e-6f0c-4b5e-9d4e-2f7a1c5b8d90\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=ice-pwd:Zq3k9VbN4m2XyP7rT1sL6dQe\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:"
    "DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
    "a={setup}\r\n"
    "a=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=sendrecv\r\n"
    "a=msid:1f3c9b8e-6f0c-4b5e-9d4e-2f7a1c5b8d90 0b2c7d4e-8a1f-4c3b-9e6d-5f0a2b1c3d4e\r\n"
    "a=rtcp-mux\r\n"
    "a=rtcp-rsize\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:13 CN/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:3735928559 cname:Hk2pQ8vXz1LmN4rB\r\n"
    "a=ssrc:3735928559 msid:1f3c9b8e-6f0c-4b5e-9d4e-2f7a1c5b8d90 "
    "0b2c7d4e-8a1f-4c3b-9e6d-5f0a2b1c3d4e\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 105 106 107 108 109 127 125 "
    "39 40 45 46 98 99 100 101 112 113 116 117 118\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:abcd\r\n"
    "a=ice-pwd:Zq3k9VbN4m2XyP7rT1sL6dQe\r\n"
    "a=ice-options:trickle\r\n"
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:"
    "DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n"
    "a={setup}\r\n"
    "a=mid:1\r\n"
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:13 urn:3gpp:video-orientation\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n"
    "a=extmap:6 http://www.webrtc.org/experiments/rtp-hdrext/video-content-type\r\n"
    "a=extmap:7 http://www.webrtc.org/experiments/rtp-hdrext/video-timing\r\n"
    "a=extmap:8 http://www.webrtc.org/experiments/rtp-hdrext/color-space\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n"
    "a=sendrecv\r\n"
    "a=msid:1f3c9b8e-6f0c-4b5e-9d4e-2f7a1c5b8d90 7c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f\r\n"
    "a=rtcp-mux\r\n"
    "a=rtcp-rsize\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtcp-fb:96 goog-remb\r\n"
    "a=rtcp-fb:96 transport-cc\r\n"
    "a=rtcp-fb:96 ccm fir\r\n"
    "a=rtcp-fb:96 nack\r\n"
    "a=rtcp-fb:96 nack pli\r\n"
    "a=rtpmap:97 rtx/90000\r\n"
    "a=fmtp:97 apt=96\r\n"
    "a=rtpmap:98 VP9/90000\r\n"
    "a=rtcp-fb:98 goog-remb\r\n"
    "a=rtcp-fb:98 transport-cc\r\n"
    "a=rtcp-fb:98 ccm fir\r\n"
    "a=rtcp-fb:98 nack\r\n"
    "a=rtcp-fb:98 nack pli\r\n"
    "a=fmtp:98 profile-id=0\r\n"
    "a=rtpmap:99 rtx/90000\r\n"
    "a=fmtp:99 apt=98\r\n"
    "a=rtpmap:102 H264/90000\r\n"
    "a=rtcp-fb:102 goog-remb\r\n"
    "a=rtcp-fb:102 transport-cc\r\n"
    "a=rtcp-fb:102 ccm fir\r\n"
    "a=rtcp-fb:102 nack\r\n"
    "a=rtcp-fb:102 nack pli\r\n"
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
    "a=rtpmap:103 rtx/90000\r\n"
    "a=fmtp:103 apt=102\r\n"
    "a=rtpmap:104 H264/90000\r\n"
    "a=rtcp-fb:104 goog-remb\r\n"
    "a=rtcp-fb:104 transport-cc\r\n"
    "a=rtcp-fb:104 ccm fir\r\n"
    "a=rtcp-fb:104 nack\r\n"
    "a=rtcp-fb:104 nack pli\r\n"
    "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n"
    "a=rtpmap:105 rtx/90000\r\n"
    "a=fmtp:105 apt=104\r\n"
    "a=rtpmap:106 H264/90000\r\n"
    "a=rtcp-fb:106 goog-remb\r\n"
    "a=rtcp-fb:106 transport-cc\r\n"
    "a=rtcp-fb:106 ccm fir\r\n"
    "a=rtcp-fb:106 nack\r\n"
    "a=rtcp-fb:106 nack pli\r\n"
    "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    "a=rtpmap:107 rtx/90000\r\n"
    "a=fmtp:107 apt=106\r\n"
    "a=rtpmap:45 AV1/90000\r\n"
    "a=rtcp-fb:45 goog-remb\r\n"
    "a=rtcp-fb:45 transport-cc\r\n"
    "a=rtcp-fb:45 ccm fir\r\n"
    "a=rtcp-fb:45 nack\r\n"
    "a=rtcp-fb:45 nack pli\r\n"
    "a=rtpmap:46 rtx/90000\r\n"
    "a=fmtp:46 apt=45\r\n"
    "a=rtpmap:116 red/90000\r\n"
    "a=rtpmap:117 rtx/90000\r\n"
    "a=fmtp:117 apt=116\r\n"
    "a=rtpmap:118 ulpfec/90000\r\n"
    "a=ssrc-group:FID 2882400001 2882400002\r\n"
    "a=ssrc:2882400001 cname:Hk2pQ8vXz1LmN4rB\r\n"
    "a=ssrc:2882400001 msid:1f3c9b8e-6f0c-4b5e-9d4e-2f7a1c5b8d90 "
    "7c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f\r\n"
    "a=ssrc:2882400002 cname:Hk2pQ8vXz1LmN4rB\r\n"
    "a=ssrc:2882400002 msid:1f3c9b8e-6f0c-4b5e-9d4e-2f7a1c5b8d90 "
    "7c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f\r\n"
)


def sdp_parts(setup: str, size: int) -> tuple[str, str]:
    """(prefix, suffix) of an SDP of about ``size`` bytes; the timestamp goes between."""
    body = _SDP_BODY.replace("{setup}", setup)
    pad_needed = size - len(_SDP_HEAD) - 19 - len(body)
    pad = ""
    n = 0
    while len(pad) < pad_needed:
        pad += f"a=ssrc:{2882400003 + n} label:bench-padding-{n:04d}\r\n"
        n += 1
    return _SDP_HEAD, body + pad


def candidate_string(seq: int, side: int, ts: int) -> str:
    # foundation = sequence number, so the receiver can check relay order
    return (
        f"candidate:{seq} 1 udp 2122260223 192.168.{side}.{seq % 250 + 2} "
        f"{50000 + seq} typ host generation 0 ufrag abcd network-id 1 ts={ts}"
    )


def extract_ts(text: str) -> int | None:
    pos = text.find("ts=")
    if pos < 0:
        return None
    end = pos + 3
    n = len(text)
    while end < n and text[end].isdigit():
        end += 1
    digits = text[pos + 3 : end]
    return int(digits) if digits else None
