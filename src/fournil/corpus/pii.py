"""PII: e-mail addresses, public IP addresses and phone numbers replaced by placeholders, counted.

Private, loopback and documentation IP ranges (192.168.x.x in a network manual) are not personal
data and are kept. Phone numbers need an international prefix or the grouped national layouts
(01 23 45 67 89, (555) 123-4567, 555-123-4567), so versions, dates and sizes are left alone.
"""

from __future__ import annotations

import ipaddress
import re

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
# Each pattern starts with a character class, so the regex engine skips to the next candidate
# character in C instead of trying the whole pattern at every position (3.7× and 1.9× faster on
# the sample); the look-behind after that first character does what a leading \b or look-behind did.
IPV4 = re.compile(r"\d(?<!\w\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}\b")  # \b(?:\d{1,3}\.){3}\d{1,3}\b
PHONE = re.compile(  # (?<![\w.+-])(?:\+\d{1,3}[ .-]?(?:\(0\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){2,4}|0\d(?:[ .]\d{2}){4}|...)
    r"[+(\d](?<![\w.+-].)"
    r"(?:(?<=\+)\d{1,3}[ .-]?(?:\(0\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){2,4}"
    r"|(?<=0)\d(?:[ .]\d{2}){4}"
    r"|(?<=\()\d{3}\) ?\d{3}-\d{4}"
    r"|(?<=\d)\d{2}-\d{3}-\d{4})(?![\w.-]*\d)"
)
NUMBERS = re.compile(r"\d[ .-]\d")  # in every address and phone number: text without it has none (two texts in three)
PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP_ADDRESS>", "phone": "<PHONE_NUMBER>"}


def _public_ip(match: re.Match) -> bool:
    try:
        return ipaddress.ip_address(match.group()).is_global
    except ValueError:
        return False


def scrub(text: str) -> tuple[str, dict[str, int]]:
    """The text with PII replaced, and how many of each kind were replaced."""
    counts = {"email": 0, "ip": 0, "phone": 0}
    if "@" in text:
        text, counts["email"] = EMAIL.subn(PLACEHOLDERS["email"], text)

    def ip(match: re.Match) -> str:
        if _public_ip(match):
            counts["ip"] += 1
            return PLACEHOLDERS["ip"]
        return match.group()

    if NUMBERS.search(text):
        text = IPV4.sub(ip, text)
        text, counts["phone"] = PHONE.subn(PLACEHOLDERS["phone"], text)
    return text, counts
