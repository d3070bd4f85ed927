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
  one (a button job, a blend) runs in the account's setting, `mj_setting` ("fast"/"relax").
- A fast job costs one of `mj_fast_jobs`, a turbo job two (the costs trueai's own estimate
  uses: trueai src/Midjourney.Services/DiscordService.cs:2691-2712); relax and upscales
  (image selection, U1-U4) cost nothing. A job is charged when Midjourney finishes it, even
  if the proxy gave up on it first (a cancel or a disable does not stop Midjourney).
- A fast or turbo job that finds fewer `mj_fast_jobs` than it costs is answered with the
  "Credits exhausted" embed (the title trueai matches,
  trueai src/Midjourney.Services/DiscordWebSocketService.cs:1532); so are fast and turbo
  jobs whose prompt says `outoffast` or `cnexhausted`.
- `banned`, `modnotice`, `oops`, `mjqueuefull`: the "Blocked", "Pending mod message",
  "Invalid parameter", "Queue full" embeds; `captcha`: the captcha modal; `stuck`: no
  answer ever. The result's prompt (the proxies' `finalPrompt`) is the prompt sent, or for
  a button job the parent's with the flag of the mode the job ran in.

Time is compressed: a job runs `run_ms` (`long`: ten minutes), and the proxies' 5-minute
job timeout is `timeout_ms` = `run_ms * 4` (not applied to `long` jobs, which stand for a
job well inside the real timeout). Tests read and set account attributes directly; a
ticker thread brings the account up to now every 10 ms (`advance()`).
"""

from tests.proxy_models.common import ProxyModel
from tests.proxy_models.novicezk import NovicezkModel
from tests.proxy_models.trueai import TrueAiModel

__all__ = ["NovicezkModel", "ProxyModel", "TrueAiModel"]
