"""The proxy models answer as their servers' sources say (plain HTTP, no driver)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.mjproxy_stub import StubProxy
from tests.proxy_models import NovicezkModel, ProxyModel, TrueAiModel

SECRET = "stub-secret"
Answer = tuple[int, Any, dict[str, str]]


def call(
    proxy: ProxyModel | StubProxy, method: str, path: str, body: Any = None, **headers: str
) -> Answer:
    """(status, parsed JSON or raw text or None, headers) of one request."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"mj-api-secret": SECRET, "Content-Type": "application/json", **headers}
    request = urllib.request.Request(proxy.url + path, data, sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            status, raw, got = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, raw, got = e.code, e.read(), dict(e.headers)
    if not raw:
        return status, None, got
    try:
        return status, json.loads(raw), got
    except ValueError:
        return status, raw.decode(), got


def imagine(
    proxy: ProxyModel | StubProxy, prompt: str, prefix: str = "", **more: Any
) -> dict[str, Any]:
    status, reply, _ = call(
        proxy, "POST", f"{prefix}/mj/submit/imagine", {"prompt": prompt, **more}
    )
    assert status == 200
    return dict(reply)


def ended(proxy: ProxyModel, task_id: str) -> dict[str, Any]:
    """The task once it has ended."""

    def done() -> Any:
        task = call(proxy, "GET", f"/mj/task/{task_id}/fetch")[1]
        return task if task and task["status"] in ("SUCCESS", "FAILURE") else None

    return dict(wait_for(done, timeout=10, what=f"task {task_id} to end"))


@pytest.fixture
def trueai() -> Iterator[TrueAiModel]:
    with TrueAiModel(admin_secret="admin-secret") as proxy:
        yield proxy


@pytest.fixture
def novicezk() -> Iterator[NovicezkModel]:
    with NovicezkModel() as proxy:
        yield proxy


def test_trueai_submit_codes_and_task(trueai: TrueAiModel) -> None:
    assert imagine(trueai, "  ")["description"] == "prompt不能为空"
    assert imagine(trueai, "a cat", state="x" * 256)["code"] == 4
    first = imagine(trueai, "a cat --turbo", state="k1")
    assert (first["code"], first["description"]) == (1, "提交成功")
    assert first["properties"]["discordChannelId"] == first["properties"]["discordInstanceId"]
    task = ended(trueai, first["result"])
    assert (task["status"], task["mode"], task["state"], task["isCompleted"]) == (
        "SUCCESS", "TURBO", "k1", True
    )  # fmt: skip
    assert len(task["buttons"]) == 9 and task["progress"] == "100%" and task["failReason"] == ""
    assert (trueai.fast_available, trueai.mj_fast_jobs) == (998, 998)  # turbo costs two
    assert ended(trueai, imagine(trueai, "a dog --relax")["result"])["mode"] == "RELAX"
    assert (trueai.fast_available, trueai.mj_fast_jobs) == (998, 998)
    trueai.core_size = 1
    imagine(trueai, "a long night --fast")
    imagine(trueai, "a long day --fast")  # waits: code 1 still (nothing queued ahead)
    queued = imagine(trueai, "an owl --fast")
    assert (queued["code"], queued["properties"]["numberOfQueues"]) == (22, 1)
    assert queued["description"] == "排队中，前面还有1个任务"  # noqa: RUF001 (the server's text)
    full = imagine(trueai, "a cat queuefull --fast")
    assert (full["code"], full["description"], full["result"]) == (3, "无可用的账号实例", None)
    assert imagine(trueai, "a cat race9")["code"] == 9


def test_trueai_auth_rate_limit_home_and_not_found(trueai: TrueAiModel) -> None:
    status, body, headers = call(trueai, "GET", "/mj/task/list", **{"mj-api-secret": "no"})
    assert (status, body, headers.get("Content-Type")) == (
        401,
        "Authorization header missing.",
        None,
    )
    assert call(trueai, "GET", "/mj/task/list", Authorization=SECRET)[0] == 200
    assert call(trueai, "GET", "/mj/task/list", Authorization="no")[0] == 401  # wins
    home = call(trueai, "GET", "/mj/home", **{"mj-api-secret": ""})[1]
    assert (home["success"], home["code"], home["message"]) == (True, 0, "操作成功")
    assert home["data"]["fastAvailableCount"] == 1000 and home["data"]["version"] == "v11.10.3.0"
    trueai.rate_limit = 1
    assert call(trueai, "GET", "/mj/task/list")[:2] == (429, None)
    assert call(trueai, "GET", "/mj/task/list")[0] == 200
    trueai.blacklisted = True
    assert call(trueai, "GET", "/mj/task/list")[:2] == (403, None)
    assert call(trueai, "GET", "/mj/home")[0] == 200  # anonymous: not limited
    trueai.blacklisted = False
    assert call(trueai, "GET", "/mj/task/nope/fetch")[:2] == (204, None)
    assert call(trueai, "POST", "/mj/submit/change", {"taskId": "1"})[:2] == (404, None)
    assert call(trueai, "POST", "/mj/submit/imagine", {"prompt": "a servererror"})[0] == 500


def test_trueai_prefix_picks_the_mode_of_an_imagine_only(trueai: TrueAiModel) -> None:
    relax = imagine(trueai, "a cat --fast", "/mj-relax")["result"]
    assert ended(trueai, relax)["mode"] == "RELAX"  # the prefix comes first
    assert trueai.tasks[relax]["properties"]["finalPrompt"] == "a cat --relax"
    grid = ended(trueai, imagine(trueai, "a fox --fast")["result"])
    up = {"taskId": grid["id"], "customId": grid["buttons"][0]["customId"]}
    child = call(trueai, "POST", "/mj-relax/mj/submit/action", up)[1]["result"]
    task = trueai.tasks[child]
    assert (task["mode"], task["requestMode"], task["action"]) == ("FAST", "RELAX", "UPSCALE")
    trueai.fast_available = 6  # FAST needs more than 6, TURBO more than 12
    assert imagine(trueai, "a cat", "/mj-fast")["code"] == 3
    assert imagine(trueai, "a cat --fast")["code"] == 3
    assert trueai.tasks[imagine(trueai, "a cat")["result"]]["mode"] == "RELAX"
    vary = {"taskId": grid["id"], "customId": grid["buttons"][5]["customId"]}
    child = call(trueai, "POST", "/mj-fast/mj/submit/action", vary)[1]["result"]
    assert trueai.tasks[child]["mode"] == "RELAX"


def test_trueai_action_and_modal_answers(trueai: TrueAiModel) -> None:
    missing = call(trueai, "POST", "/mj/submit/action", {"taskId": "1", "customId": "MJ::x"})
    assert missing[:2] == (404, {"code": 3, "description": "关联任务不存在或已失效",
                                 "result": None, "properties": {}})  # fmt: skip
    assert call(trueai, "POST", "/mj/submit/action", {"taskId": "1"})[1]["code"] == 4
    grid = ended(trueai, imagine(trueai, "a fox --fast")["result"])
    upscale = {"taskId": grid["id"], "customId": grid["buttons"][1]["customId"]}
    long_state = call(trueai, "POST", "/mj/submit/action", {**upscale, "state": "s" * 256})[1]
    assert (long_state["success"], long_state["code"]) == (False, -1)
    assert long_state["message"] == "State参数过长，最大255字符"  # noqa: RUF001 (the server's)
    up = ended(trueai, call(trueai, "POST", "/mj/submit/action", upscale)[1]["result"])
    zoom = next(b["customId"] for b in up["buttons"] if b["customId"].startswith("MJ::Custom"))
    waiting = call(trueai, "POST", "/mj/submit/action", {"taskId": up["id"], "customId": zoom})[1]
    assert (waiting["code"], waiting["properties"]) == (
        21, {"finalPrompt": "a fox", "remix": True}
    )  # fmt: skip
    assert trueai.tasks[waiting["result"]]["status"] == "MODAL"
    modal = call(trueai, "POST", "/mj/submit/modal", {"taskId": waiting["result"], "prompt": ""})
    assert modal[1]["code"] == 1
    zoomed = ended(trueai, waiting["result"])
    assert (zoomed["prompt"], zoomed["action"]) == ("a fox --fast", "ZOOM")  # the parent's
    bogus = {"taskId": grid["id"], "customId": "MJ::JOB::variation::9::nope"}
    failed = ended(trueai, call(trueai, "POST", "/mj/submit/action", bogus)[1]["result"])
    assert failed["failReason"].startswith("BadRequest: ")  # Discord refuses it


@pytest.mark.parametrize("auto_relax", [True, False])
def test_trueai_out_of_fast_hours(auto_relax: bool) -> None:
    with TrueAiModel(auto_relax=auto_relax) as proxy:
        running = imagine(proxy, "a long night --relax")["result"]
        proxy.mj_fast_jobs = 0  # Midjourney's truth; the proxy still estimates 1000
        failed = ended(proxy, imagine(proxy, "a cat --fast")["result"])
        assert failed["failReason"] == "任务失败，请重试"  # noqa: RUF001 (the server's text)
        assert (proxy.fast_exhausted, proxy.fast_available) == (True, 0)
        home = call(proxy, "GET", "/mj/home")[1]["data"]
        assert home["fastAvailableCount"] == 0
        assert imagine(proxy, "a cat --fast")["code"] == 3
        if auto_relax:
            assert (proxy.allow_modes, proxy.enabled, home["relaxAvailableCount"]) == (
                ["RELAX"], True, -1
            )  # fmt: skip
            relaxed = ended(proxy, imagine(proxy, "a dog")["result"])
            assert (relaxed["mode"], relaxed["status"]) == ("RELAX", "SUCCESS")
            assert proxy.tasks[relaxed["id"]]["properties"]["finalPrompt"] == "a dog --relax"
        else:
            assert (proxy.enabled, proxy.disabled_reason) == (False, "账号用量已经用完")
            assert ended(proxy, running)["failReason"] == "强制取消"
            assert imagine(proxy, "a dog --relax")["code"] == 3


def test_trueai_moderation_and_midjourney_errors(trueai: TrueAiModel) -> None:
    oops = ended(trueai, imagine(trueai, "a cat oops")["result"])
    assert oops["failReason"].startswith("Invalid parameter, ")
    assert ended(trueai, imagine(trueai, "badprompt")["result"])["failReason"] == "可能包含敏感词"
    trueai.timeout_ms = 100
    stuck = ended(trueai, imagine(trueai, "a cat stuck")["result"])
    assert stuck["failReason"] == "执行超时 5 分钟"
    captcha = imagine(trueai, "a cat captcha")["result"]
    wait_for(lambda: trueai.locked, timeout=10, what="the captcha lock")
    assert (imagine(trueai, "a cat")["code"], trueai.disabled_reason) == (3, "CF 人工验证...")
    assert ended(trueai, captcha)["failReason"] == "执行超时 5 分钟"  # no answer: timed out
    trueai.locked = False
    assert ended(trueai, imagine(trueai, "a cat banned")["result"])["failReason"] == "Blocked"
    assert not trueai.enabled and str(trueai.disabled_reason).startswith("Blocked, ")


def test_trueai_cancel_answers(trueai: TrueAiModel) -> None:
    task_id = imagine(trueai, "a long night --fast")["result"]
    status, body, _ = call(trueai, "POST", f"/mj/task/{task_id}/cancel", {})
    assert (status, body) == (400, "演示模式，禁止操作")  # noqa: RUF001 (the server's text)
    admin = {"mj-api-secret": "admin-secret"}
    assert call(trueai, "POST", f"/mj/task/{task_id}/cancel", {}, **admin)[:2] == (200, None)
    assert call(trueai, "POST", "/mj/task/nope/cancel", {}, **admin)[:2] == (200, None)
    task = ended(trueai, task_id)
    assert (task["status"], task["failReason"]) == ("FAILURE", "取消任务")
    trueai.tasks[task_id]["_ends"] = 0  # Midjourney still runs it: charged when it ends
    wait_for(lambda: trueai.mj_fast_jobs == 999, timeout=10, what="Midjourney's charge")
    assert trueai.fast_available == 1000  # the proxy's estimate counts successes only


def test_trueai_and_novicezk_lists(trueai: TrueAiModel, novicezk: NovicezkModel) -> None:
    for proxy in (trueai, novicezk):
        ids = [imagine(proxy, f"cat {i} --relax")["result"] for i in range(3)]
        for task_id in ids:
            ended(proxy, task_id)
        listed = call(proxy, "GET", "/mj/task/list")[1]
        assert [t["id"] for t in listed] == ids[::-1]
        found = call(proxy, "POST", "/mj/task/list-by-condition", {"ids": [ids[0], "nope"]})[1]
        assert [t["id"] for t in found] == [ids[0]]
    assert call(trueai, "POST", "/mj/task/list-by-ids", {"ids": []})[1] == []
    novicezk.core_size = 1
    long_ids = [imagine(novicezk, f"a long night {i}")["result"] for i in range(2)]
    queue = call(novicezk, "GET", "/mj/task/queue")[1]
    assert [t["id"] for t in queue] == long_ids
    assert [t["status"] for t in queue] == ["SUBMITTED", "NOT_START"]


def test_novicezk_routes_and_auth(novicezk: NovicezkModel) -> None:
    for path in ("/mj/submit/action", "/mj/submit/modal", "/mj/task/1/cancel"):
        assert call(novicezk, "POST", path, {})[1]["status"] == 404
    assert call(novicezk, "POST", "/mj-fast/mj/submit/imagine", {"prompt": "a"})[:2] == (404, None)
    assert call(novicezk, "GET", "/mj/home")[0] == 404
    assert call(novicezk, "GET", "/mj/task/list", **{"mj-api-secret": "no"})[:2] == (401, None)
    assert call(novicezk, "GET", "/mj/task/nope/fetch")[:2] == (200, None)
    assert call(novicezk, "POST", "/mj/submit/imagine", {"prompt": "a servererror"})[0] == 500
    assert imagine(novicezk, "an owl race9")["description"] == "提交失败，系统异常"  # noqa: RUF001
    status, body, _ = call(novicezk, "POST", "/mj/submit/change", {"taskId": "1"})
    assert (status, body["error"]) == (500, "Internal Server Error")  # a null action
    with NovicezkModel(secret=None) as open_proxy:
        assert call(open_proxy, "GET", "/mj/task/list", **{"mj-api-secret": "any"})[0] == 200


def test_novicezk_submit_codes_and_children(novicezk: NovicezkModel) -> None:
    banned = imagine(novicezk, "a BadPrompt cat")
    assert (banned["code"], banned["properties"]["bannedWord"]) == (24, "BadPrompt")
    grid = ended(novicezk, imagine(novicezk, "a fox --relax", state="s")["result"])
    assert "mode" not in grid and "buttons" not in grid and grid["state"] == "s"
    change = {"taskId": grid["id"], "action": "UPSCALE", "index": 2}
    up = call(novicezk, "POST", "/mj/submit/change", change)[1]
    assert ended(novicezk, up["result"])["description"] == f"/up {grid['id']} U2"
    refused = call(novicezk, "POST", "/mj/submit/change", {**change, "taskId": up["result"]})
    assert refused[1]["description"] == "关联任务不允许执行变化"
    assert call(novicezk, "POST", "/mj/submit/change", {**change, "action": "ZOOM"})[0] == 400
    simple = call(novicezk, "POST", "/mj/submit/simple-change", {"content": f"{grid['id']} v3"})
    assert novicezk.tasks[simple[1]["result"]]["action"] == "VARIATION"
    bad = call(novicezk, "POST", "/mj/submit/simple-change", {"content": "x U5"})[1]
    assert bad["description"] == "content参数错误"
    ended(novicezk, simple[1]["result"])
    novicezk.core_size, novicezk.queue_size = 1, 1
    imagine(novicezk, "a long night")
    assert imagine(novicezk, "a long day")["code"] == 1  # queued; busy threads not counted
    full = imagine(novicezk, "an owl")
    assert (full["code"], full["result"]) == (23, None)
    assert len(novicezk.tasks) == 5  # the refused task was deleted
    novicezk.enabled = False
    assert imagine(novicezk, "an owl")["description"] == "无可用的账号实例"


def test_novicezk_failures_keep_the_account(novicezk: NovicezkModel) -> None:
    novicezk.mj_fast_jobs = 0
    out = ended(novicezk, imagine(novicezk, "a cat --fast")["result"])
    assert out["failReason"].startswith("[Credits exhausted] ")
    assert ended(novicezk, imagine(novicezk, "a cat --relax")["result"])["status"] == "SUCCESS"
    novicezk.mj_setting = "relax"  # a prompt without a flag runs in the account's setting
    assert ended(novicezk, imagine(novicezk, "a dog")["result"])["status"] == "SUCCESS"
    for prompt, reason in [("banned", "[Blocked] "), ("modnotice", "[Pending mod message] "),
                           ("captcha", "[Action required to continue] /captcha/embedded/"),
                           ("oops", "[Invalid parameter] ")]:  # fmt: skip
        assert ended(novicezk, imagine(novicezk, prompt)["result"])["failReason"].startswith(reason)
    novicezk.timeout_ms = 100
    assert ended(novicezk, imagine(novicezk, "stuck")["result"])["failReason"] == "任务超时"
    assert novicezk.enabled


def test_stub_proxy_keeps_the_old_constructor() -> None:
    with StubProxy(buttons=False) as old, StubProxy(secret=None) as new:
        assert isinstance(old.model, NovicezkModel) and isinstance(new.model, TrueAiModel)
        new.fast_available = 3
        assert new.model.fast_available == 3
        assert imagine(old, "a cat")["code"] == 1 and old.sent("/mj/submit/imagine")


# --- describe, shorten, blend, video and the new buttons (issue 22) ----------------------

CAT = "https://example.invalid/cat.png"
PNG = "data:image/png;base64,AAAA"


def submit_to(proxy: ProxyModel, route: str, body: dict[str, Any], prefix: str = "") -> Any:
    status, reply, _ = call(proxy, "POST", f"{prefix}/mj/submit/{route}", body)
    return reply if status == 200 else (status, reply)


def test_trueai_describe_shorten_and_blend(trueai: TrueAiModel) -> None:
    assert submit_to(trueai, "describe", {})["description"] == "base64或link不能为空"
    assert submit_to(trueai, "describe", {"link": "ftp://x"})["description"] == "链接格式错误"
    assert submit_to(trueai, "describe", {"base64": "!!"})["description"] == "base64格式错误"
    long_state = submit_to(trueai, "describe", {"link": CAT, "state": "s" * 256})
    assert (long_state["code"], long_state["success"]) == (-1, False)  # not caught there
    described = ended(trueai, submit_to(trueai, "describe", {"link": CAT}, "/mj-relax")["result"])
    assert (described["imageUrl"], described["mode"], described["action"]) == (
        CAT, "RELAX", "DESCRIBE"
    )  # fmt: skip
    assert described["properties"]["finalPrompt"].count("\u20e3") == 4
    assert [b["customId"] for b in described["buttons"]][-1] == "MJ::Picread::Retry"
    assert trueai.fast_available == 1000  # a describe is counted apart

    blank = submit_to(trueai, "shorten", {"prompt": ""})
    assert blank["code"] == 1  # shorten checks no prompt
    short = ended(
        trueai, submit_to(trueai, "shorten", {"prompt": "a red fox at dawn --fast"})["result"]
    )
    assert short["description"].startswith("**Important tokens**") and short["mode"] == "FAST"
    assert "\u20e3 a red fox at dawn" in short["properties"]["finalPrompt"]

    one = submit_to(trueai, "blend", {"base64Array": [CAT]})
    assert one["description"] == "图片参数错误，2~5张图片"  # noqa: RUF001 (the server's text)
    nulled = submit_to(trueai, "blend", {"base64Array": [CAT, PNG], "dimensions": None})
    assert nulled["description"] == "dimensions参数错误"
    round_ = submit_to(trueai, "blend", {"base64Array": [CAT, PNG], "dimensions": "ROUND"})
    assert (round_["code"], round_["message"]) == (-1, "参数异常")  # no such enum value
    assert (
        submit_to(trueai, "blend", {"base64Array": [CAT, "!!"]})["description"] == "base64格式错误"
    )
    body = {"base64Array": [CAT, PNG], "dimensions": "LANDSCAPE"}
    blended = ended(trueai, submit_to(trueai, "blend", body, "/mj-relax")["result"])
    assert blended["prompt"].startswith(f"{CAT} https://cdn.discordapp.invalid/")
    assert blended["prompt"].endswith("--ar 3:2") and blended["mode"] == "RELAX"
    assert blended["properties"]["finalPrompt"].endswith("--ar 3:2 --relax")
    assert len(blended["buttons"]) == 9


def test_trueai_video_checks_in_order(trueai: TrueAiModel) -> None:
    video = {"prompt": "a cat runs", "image": CAT}
    trueai.enable_video = False
    assert submit_to(trueai, "video", video)["description"] == "视频功能未启用"
    trueai.enable_video = True
    assert submit_to(trueai, "video", {**video, "prompt": " "})["description"] == "Prompt 不能为空"
    assert submit_to(trueai, "video", {**video, "image": "!!"})["description"] == "base64格式错误"
    assert submit_to(trueai, "video", {**video, "loop": "yes"})["message"] == "参数异常"
    no_remix = submit_to(trueai, "video", video)
    assert (no_remix["code"], no_remix["description"]) == (9, "未开启 REMIX，无法使用视频扩展功能")  # noqa: RUF001
    trueai.remix = True
    trueai.hd_video = False
    assert submit_to(trueai, "video", {**video, "videoType": "vid_1.1_i2v_720"})["code"] == 3
    trueai.hd_video = True
    assert (
        submit_to(trueai, "video", {**video, "action": "extend"})["description"] == "目标任务不存在"
    )
    assert submit_to(trueai, "video", {**video, "taskId": "1", "action": "Extend"})["code"] == 4
    missing = submit_to(trueai, "video", {**video, "taskId": "1", "action": "extend"})
    assert missing[0] == 404 and missing[1]["code"] == 3
    trueai.fast_available, trueai.relax_video = 8, False  # fast video needs more than 8
    assert submit_to(trueai, "video", video)["code"] == 3
    trueai.fast_available, trueai.relax_video = 1000, True

    body = {**video, "endImage": PNG, "motion": "high", "loop": True, "batchSize": 1}
    made = ended(trueai, submit_to(trueai, "video", body, "/mj-relax")["result"])
    assert made["prompt"] == f"{CAT} a cat runs --video 1 --end loop --motion high --bs 1"
    assert (made["action"], made["mode"], made["imageUrl"][-4:]) == ("VIDEO", "RELAX", ".mp4")
    assert [b["label"] for b in made["buttons"]] == ["U1", ""]  # one clip, then reroll
    assert made["videoUrls"] is None  # EnableFillOfficialCdn is off by default

    trueai.fill_official_cdn = True
    fast = ended(trueai, submit_to(trueai, "video", video)["result"])
    assert fast["mode"] == "FAST" and len(fast["videoUrls"]) == 4 == len(fast["imageUrls"])
    assert fast["videoUrl"] == fast["imageUrl"]
    assert trueai.fast_available == 1000 - 8  # a batch of 4: eight fast jobs
    extend = {"prompt": "further --relax", "taskId": fast["id"], "action": "extend", "index": 2}
    queued = trueai.tasks[submit_to(trueai, "video", extend, "/mj-relax")["result"]]
    assert queued["properties"]["custom_id"] == (
        f"MJ::JOB::video_virtual_upscale::3::{fast['id']}-hash"
    )
    extended = ended(trueai, queued["id"])
    # trueai chose FAST for it whatever the route said, and wrote it into the prompt.
    assert (extended["action"], extended["mode"]) == ("VIDEO", "FAST")
    assert extended["properties"]["finalPrompt"].endswith("--motion low --fast")


def test_trueai_buttons_remix_and_the_mode_it_reports(trueai: TrueAiModel) -> None:
    grid = ended(trueai, imagine(trueai, "a fox --v 6 --relax")["result"])
    first = {"taskId": grid["id"], "customId": grid["buttons"][0]["customId"]}
    up = ended(trueai, submit_to(trueai, "action", first)["result"])
    ids = [b["customId"] for b in up["buttons"]]
    assert ids[0].startswith("MJ::JOB::upsample_v6_2x_subtle::1::")
    assert ids[1].startswith("MJ::JOB::upsample_v6_2x_creative::1::")
    assert ids[-2].startswith("MJ::JOB::animate_high::1::")
    # A U's message names no mode: trueai reads the parent's flag, echoed.
    assert up["properties"]["messageContent"].endswith("Image #1 <@1200000000000000002>")
    assert up["mode"] == "RELAX"
    # Midjourney runs a button job in the account's setting (fast here) and says so; trueai
    # still reports the echoed prompt's flag (TaskInfo.cs:698-717).
    hd = ended(
        trueai, submit_to(trueai, "action", {"taskId": up["id"], "customId": ids[1]})["result"]
    )
    assert hd["action"] == "UPSCALE_HD" and hd["mode"] == "RELAX"
    assert hd["properties"]["messageContent"].endswith("(fast)")
    assert not any(b["customId"].startswith("MJ::JOB::upsample_") for b in hd["buttons"])
    assert trueai.mj_fast_jobs == 999 and trueai.fast_available == 1000  # ran fast, not counted

    trueai.remix = True
    vary = {"taskId": up["id"], "customId": ids[2]}  # Vary (Subtle)
    waiting = submit_to(trueai, "action", vary)
    assert (waiting["code"], waiting["properties"]["remix"]) == (21, True)
    trueai.remix_auto_submit = True
    auto = ended(trueai, submit_to(trueai, "action", vary)["result"])
    assert auto["properties"]["finalPrompt"].endswith("--fast")  # trueai's choice, written


def test_novicezk_blend_and_describe(novicezk: NovicezkModel) -> None:
    bad = call(
        novicezk, "POST", "/mj/submit/blend", {"base64Array": [PNG, PNG], "dimensions": "ROUND"}
    )
    assert bad[0] == 400
    assert (
        submit_to(novicezk, "blend", {"base64Array": [CAT, PNG]})["description"] == "base64格式错误"
    )
    novicezk.mj_setting = "relax"
    blended = ended(novicezk, submit_to(novicezk, "blend", {"base64Array": [PNG, PNG]})["result"])
    assert blended["properties"]["finalPrompt"].endswith("--ar 1:1")  # no flag: the setting's
    assert novicezk.mj_fast_jobs == 1000
    described = ended(novicezk, submit_to(novicezk, "describe", {"base64": PNG})["result"])
    assert described["prompt"] == described["promptEn"] == described["properties"]["finalPrompt"]
    assert described["prompt"].count("\u20e3") == 4 and described["imageUrl"]
