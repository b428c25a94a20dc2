"""Draws eye_state_signal.png from a demo log and its timeline (docs/eye-state.md, "The fused signal").

    python docs/images/eye_state_signal.py runs/quickstart/demo.jsonl runs/quickstart/driver.json OUT.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log_path, timeline_path, out_path = sys.argv[1:4]
frames = [json.loads(line) for line in open(log_path)]
events = json.load(open(timeline_path))["events"]
t = [f["t"] for f in frames]
fig, ax = plt.subplots(figsize=(12, 3.2), dpi=100)
for event in events:
    if event["type"] in ("blink", "microsleep"):
        ax.axvspan(event["start"], event["end"], color="0.85", lw=0)
ax.plot(t, [f.get("closure") for f in frames], color="tab:blue", lw=1, label="EAR closure")
ax.plot(t, [f.get("eye_prob") for f in frames], color="tab:orange", lw=1, label="eye model p(closed)")
ax.plot(t, [f.get("eye_score") for f in frames], color="black", lw=1.2, label="fused eye_score")
ax.axhline(0.65, color="tab:red", ls="--", lw=0.8, label="closes at 0.65")
ax.set_xlabel("seconds (grey: true blinks and the microsleep)")
ax.set_ylim(-0.05, 1.05)
ax.set_xlim(0, t[-1])
ax.legend(loc="upper right", ncol=4, fontsize=8)
fig.tight_layout()
fig.savefig(out_path)
