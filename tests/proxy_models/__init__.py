"""Models of the two midjourney-proxy servers our driver talks to, one per server and
version, each fronting ONE Midjourney account over real HTTP on 127.0.0.1:

- `TrueAiModel`: trueai-org/midjourney-proxy v11.10.3 (commit ed32197), trueai.py;
- `NovicezkModel`: novicezk/midjourney-proxy v2.6.3 (commit 0be95a9), novicezk.py.

Every behaviour of a server cites its source at that commit (`trueai <path>:<lines>`,
`novicezk <path>:<lines>`, paths from the repository root).

What Midjourney (Discord) does with a job is in neither proxy's source, so it is scripted:
by keywords in the job's prompt (common.MJ_KEYWORDS), or by account state the test sets
(`mj_fast_jobs`, `mj_setting`). Rules Midjourney follows in these models, all assumptions:

- A prompt runs in the mode of its last `--fast`/`--relax`/`--turbo` flag; a job without
  one (a button job, a describe, a novicezk blend) runs in the account's setting,
  `mj_setting` ("fast"/"relax"), whatever flag its parent's prompt holds.
- A fast job costs one of `mj_fast_jobs`, a turbo job two, a video batch twice its clips
  (the costs trueai's own estimate uses: trueai src/Midjourney.Services/DiscordService.cs:
  2664-2712); relax, U1-U4 and video upscales (a clip's selection) and describes cost
  nothing. A job is charged when Midjourney finishes it, even if the proxy gave up on it
  first (a cancel or a disable does not stop Midjourney).
- A fast or turbo job that finds fewer `mj_fast_jobs` than it costs is answered with the
  "Credits exhausted" embed (the title trueai matches,
  trueai src/Midjourney.Services/DiscordWebSocketService.cs:1532); so are fast and turbo
  jobs whose prompt says `outoffast` or `cnexhausted`.
- `banned`, `modnotice`, `oops`, `mjqueuefull`: the "Blocked", "Pending mod message",
  "Invalid parameter", "Queue full" embeds; `captcha`: the captcha modal; `stuck`: no
  answer ever.
- The result's prompt (the proxies' `finalPrompt`) is the prompt sent, or for a button job
  its parent's as Midjourney echoed it, flags as written; the mode a job ran in shows only
  in its message's suffix, "(fast)", "(relaxed)" or "(turbo)", which a U1-U4 ("Image #N")
  lacks (trueai's own samples of Midjourney's messages: a `--relax` prompt echoed under a
  pan, zoom or variation, src/Midjourney.Base/Utils/MjMessageParser.cs:33-56, 68, 83-99).
- Its buttons: a grid's U1-U4, reroll and V1-V4; an upscaled image's upscales by version,
  vary, zoom, pan, vary region and animate; a video's upscale per clip and reroll; an
  upscaled clip's extends. The last three, and a describe's four prompts and a shorten's
  five (placeholders), as trueai builds them for its own accounts (common.py says where).

Time is compressed: a job runs `run_ms` (`long`: ten minutes), and the proxies' 5-minute
job timeout is `timeout_ms` = `run_ms * 4` (not applied to `long` jobs, which stand for a
job well inside the real timeout). Tests read and set account attributes directly; a
ticker thread brings the account up to now every 10 ms (`advance()`).
"""

from tests.proxy_models.common import ProxyModel
from tests.proxy_models.novicezk import NovicezkModel
from tests.proxy_models.trueai import TrueAiModel

__all__ = ["NovicezkModel", "ProxyModel", "TrueAiModel"]
