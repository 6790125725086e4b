"""The live bot runtime: a market data feed, bars built from ticks at each close, the live clock,
the paper venue, the OMS (with risk when configured), the SQL store, and a BotManager that the CLI
(`tickbridge run`) and the control API drive through the BotControl protocol.

Modules are small on purpose; in reading order: config (BotConfig, RuntimeConfig), control (the
BotControl protocol the API drives), feed (tick file replay), bars (ticks -> bars), indicators
(a strategy's I() recomputed over the bars so far), driver (next() at each close, signals,
muting), actions (stop and kill), bot (one bot on its thread), manager (BotManager), recorder
(the session's ticks and meta), cli (`run`, `parity`), and parity last.
"""
