-- luacheck settings for the Redis scripts in router/commands, checked once expanded
-- (`python -m router.lua DIR`): Redis runs Lua 5.1 with these globals.
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct"}
max_line_length = 100
