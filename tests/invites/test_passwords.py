"""The password policy and argon2 hashing (no database)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from gateway.invites.passwords import (
    DEFAULT_COST,
    TEST_COST,
    PasswordCost,
    PasswordProblem,
    check_new_password,
    common_passwords,
    cost_for,
    hash_password,
    needs_rehash,
    personal_words,
    verify_password,
)

ANA = personal_words(emails=["ana.garcia@family.example"], phones=["+14155550142"], names=["Ana García"])


def problem(password: str, confirmation: str | None = None, personal=ANA):
    return check_new_password(password, password if confirmation is None else confirmation, personal=personal)


def test_the_bundled_list_has_a_few_thousand_common_passwords():
    words = common_passwords()
    assert len(words) >= 3000
    assert {"123456", "password", "qwertyuiop", "1234567890", "iloveyou", "contraseña", "teamo"} <= words


@pytest.mark.parametrize("password", [
    "correct horse battery", "Mi perro se llama Toby", "vgq8-Lm2r-XZ", "dragon8472910365", "ñandú volador 7",
])
def test_good_passwords_pass(password):
    assert problem(password) is None


@pytest.mark.parametrize("password, expected", [
    ("", PasswordProblem.TOO_SHORT),
    ("abc12345!", PasswordProblem.TOO_SHORT),  # 9 characters
    ("x" * 1025 + "yz!", PasswordProblem.TOO_LONG),
    ("1234567890", PasswordProblem.COMMON),
    ("QwertyUiop", PasswordProblem.COMMON),
    ("password123!", PasswordProblem.COMMON),  # a common word with a short tail of digits and symbols
    ("P@ssw0rd2024", PasswordProblem.COMMON),  # and the usual symbol-for-letter swaps
    ("iloveyou2025", PasswordProblem.COMMON),
    ("contraseña123", PasswordProblem.COMMON),
    ("zzzzzzzzzzzz", PasswordProblem.COMMON),
    ("abababab1212", PasswordProblem.COMMON),  # fewer than 4 different characters
    ("ana.garcia@family.example", PasswordProblem.PERSONAL),
    ("ANA.GARCIA@FAMILY.EXAMPLE", PasswordProblem.PERSONAL),
    ("+14155550142", PasswordProblem.PERSONAL),
    ("(415) 555-0142", PasswordProblem.PERSONAL),
    ("my number 4155550142", PasswordProblem.PERSONAL),
    ("anagarcia2024", PasswordProblem.PERSONAL),
    ("Ana García 1985", PasswordProblem.PERSONAL),
    ("garcia!!2024", PasswordProblem.PERSONAL),
    ("anagarcia", PasswordProblem.TOO_SHORT),
])
def test_weak_passwords_are_refused_with_the_reason(password, expected):
    assert problem(password) is expected


def test_the_confirmation_must_match_and_is_checked_last():
    assert problem("correct horse battery", "correct horse batterY") is PasswordProblem.MISMATCH
    assert problem("short", "other") is PasswordProblem.TOO_SHORT


def test_composed_and_decomposed_accents_are_the_same_password():
    composed, decomposed = "cami\u00f3n amarillo", "camio\u0301n amarillo"
    assert problem(composed, decomposed) is None


def test_the_cost_comes_from_settings():
    assert cost_for(SimpleNamespace(environment="test")) == TEST_COST
    assert cost_for(SimpleNamespace(environment="production")) == DEFAULT_COST
    custom = PasswordCost(time_cost=2, memory_cost=19456, parallelism=1)
    assert cost_for(SimpleNamespace(environment="production", password_cost=custom)) == custom


async def test_hash_and_verify():
    stored = await hash_password("correct horse battery", TEST_COST)
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert await verify_password(stored, "correct horse battery", TEST_COST)
    assert await verify_password(stored, "camio\u0301n", TEST_COST) is False
    assert await verify_password(stored, "correct horse batter", TEST_COST) is False
    assert await verify_password("not a hash", "x", TEST_COST) is False
    assert needs_rehash(stored, DEFAULT_COST) and not needs_rehash(stored, TEST_COST)
    accented = await hash_password("cami\u00f3n amarillo", TEST_COST)
    assert await verify_password(accented, "camio\u0301n amarillo", TEST_COST)


async def test_no_stored_hash_costs_as_much_as_a_real_check():
    stored = await hash_password("correct horse battery", TEST_COST)
    await verify_password(None, "warm-up", TEST_COST)  # the dummy hash is made once per cost

    real, dummy = [], []
    for _ in range(5):
        start = time.perf_counter()
        await verify_password(stored, "wrong guess here", TEST_COST)
        real.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert await verify_password(None, "wrong guess here", TEST_COST) is False
        dummy.append(time.perf_counter() - start)
    assert min(dummy) > min(real) / 3  # the same argon2 work, not an instant "no"
