"""Each midjourney-proxy server's answers read by that server's rules (no server needed):
the texts are the servers' own, as their sources write them."""

from __future__ import annotations

import pytest

from workers.drivers.mjproxy_servers import NOVICEZK, TRUEAI, Meaning, Server

M = Meaning


@pytest.mark.parametrize(
    ("server", "code", "text", "meaning"),
    [
        (TRUEAI, 3, "无可用的账号实例", M.RETRY),  # no client can tell why
        (TRUEAI, 4, "提交Imagine任务异常", M.RETRY),
        (TRUEAI, 3, "关联任务不存在或已失效", M.PERMANENT),
        (TRUEAI, 9, "提交失败，队列已满，请稍后重试", M.RETRY),  # noqa: RUF001
        (TRUEAI, 9, "提交失败，系统异常", M.RETRY),  # noqa: RUF001
        (TRUEAI, 4, "并发数已达上限", M.RETRY),
        (TRUEAI, 4, "服务暂不可用，请联系管理员", M.RETRY),  # noqa: RUF001
        (TRUEAI, 4, "prompt不能为空", M.PERMANENT),
        (TRUEAI, -1, "队列数已达上限", M.RETRY),
        (TRUEAI, -1, "State参数过长，最大255字符", M.PERMANENT),  # noqa: RUF001
        (TRUEAI, 23, "队列已满", M.PERMANENT),  # trueai never answers 23
        (NOVICEZK, 23, "队列已满，请稍后尝试", M.RETRY),  # noqa: RUF001
        (NOVICEZK, 9, "提交失败，系统异常", M.RETRY),  # noqa: RUF001
        (NOVICEZK, 3, "无可用的账号实例", M.RETRY),  # novicezk tells nothing of fast time
        (NOVICEZK, 3, "账号不可用: 1234", M.RETRY),
        (NOVICEZK, 3, "关联任务不存在或已失效", M.PERMANENT),
        (NOVICEZK, 24, "可能包含敏感词", M.PERMANENT),
        (NOVICEZK, 4, "关联任务状态错误", M.PERMANENT),
    ],
)
def test_refused_submissions_mean_what_each_server_means(
    server: Server, code: int, text: str, meaning: Meaning
) -> None:
    assert server.refused(code, text) is meaning


@pytest.mark.parametrize(
    ("server", "reason", "meaning"),
    [
        (TRUEAI, "任务失败，请重试", M.OUT_OF_FAST),  # noqa: RUF001
        (TRUEAI, "强制取消", M.RETRY),
        (TRUEAI, "Blocked", M.ATTENTION),
        (TRUEAI, "Pending mod message", M.ATTENTION),
        (TRUEAI, "Subscription paused", M.ATTENTION),
        (TRUEAI, "请求失败，禁用账号", M.ATTENTION),  # noqa: RUF001
        (TRUEAI, "Invalid parameter, Unrecognized parameter(s): `--foo`", M.PERMANENT),
        (TRUEAI, "Banned prompt detected, ...", M.PERMANENT),
        (TRUEAI, "可能包含敏感词", M.PERMANENT),
        (TRUEAI, "取消任务", M.PERMANENT),
        (TRUEAI, "Queue full, You have too many jobs running", M.RETRY),
        (TRUEAI, "任务提交超时", M.RETRY),
        (TRUEAI, "执行超时 5 分钟", M.RETRY),
        (TRUEAI, "实例不可用", M.RETRY),
        (TRUEAI, "服务异常，请稍后重试", M.RETRY),  # noqa: RUF001
        (TRUEAI, "任务超时，自动取消", M.RETRY),  # noqa: RUF001
        (TRUEAI, "TooManyRequests: slow down", M.RETRY),
        (TRUEAI, "something no rule knows", M.RETRY),
        (NOVICEZK, "[Credits exhausted] You have no more fast hours", M.OUT_OF_FAST),
        (NOVICEZK, "[Blocked] Your account has been blocked", M.ATTENTION),
        (NOVICEZK, "[Pending mod message] ...", M.ATTENTION),
        (NOVICEZK, "[Action needed to continue] /captcha/embedded/xyz", M.ATTENTION),
        (NOVICEZK, "[Invalid parameter] Invalid value", M.PERMANENT),
        (NOVICEZK, "[Banned prompt detected] ...", M.PERMANENT),
        (NOVICEZK, "任务超时", M.RETRY),
        (NOVICEZK, "[Internal Server Error] connect timed out", M.RETRY),
        (NOVICEZK, "Failed to process your command", M.RETRY),
        (NOVICEZK, "[Queue full] ...", M.RETRY),
        (NOVICEZK, "something no rule knows", M.RETRY),
    ],
)
def test_failed_jobs_mean_what_each_server_means(
    server: Server, reason: str, meaning: Meaning
) -> None:
    assert server.failed(reason) is meaning


def test_only_trueai_takes_a_mode_by_route_reports_it_and_tells_fast_time() -> None:
    assert (TRUEAI.mode_routes, TRUEAI.reports_mode, TRUEAI.home) == (True, True, True)
    assert (NOVICEZK.mode_routes, NOVICEZK.reports_mode, NOVICEZK.home) == (False, False, False)
    assert TRUEAI.buttons and not NOVICEZK.buttons
    assert TRUEAI.lists_latest == 100 and NOVICEZK.lists_latest is None
