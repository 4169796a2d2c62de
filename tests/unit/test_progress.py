"""tierdesk/progress.py: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from tierdesk.progress import Progress


def test_off_a_terminal_every_message_is_one_plain_line() -> None:
    out = io.StringIO()
    with Progress(out) as progress:
        progress("training on 306 examples, 20 intents")
        progress("cross-validation fold 1/5")
        progress("cross-validation fold 2/5")
    assert out.getvalue() == ("  … training on 306 examples, 20 intents\n  … cross-validation fold 1/5\n"
                              "  … cross-validation fold 2/5\n")


def test_on_a_terminal_counts_move_a_bar_and_other_messages_print_above_it() -> None:
    out = io.StringIO()
    with Progress(out, tty=True) as progress:
        progress("loading clinc150")
        for done in (512, 1024, 1500):
            progress(f"replayed {done}/1,500 messages")
        progress("seeded 20,000/40,000 messages (3 s)")
    text = out.getvalue()
    assert "  … loading clinc150\n" in text
    assert "replayed messages 100%|" in text and "1500/1500" in text
    # A new total starts a new bar; an unfinished one is closed at the end.
    assert "seeded messages (3 s)  50%|" in text and "20000/40000" in text
    assert "\r" in text
