"""Multilingual patterns for :mod:`gateway.threads.reply_text`.

Everything here is data: the words mail clients put into the text they generate when a
message is answered or forwarded, per language, compiled into regular expressions. The
algorithm that uses them (and the order the rules apply in) lives in ``reply_text``.

Sources of the wording: the strings Gmail, Outlook (desktop, web, mobile), Apple Mail,
Thunderbird, Yahoo, AOL, Zimbra/Comcast, mail.ru/Yandex, Samsung/Android mail and the
BlackBerry/iOS mobile clients emit in their localised builds, and the fixtures of the
open-source reply parsers (github/email_reply_parser, mailgun/talon,
alfonsrv/mail-parser-reply). Add a language by adding its words to the tables below.
"""
from __future__ import annotations

import re


def _alt(words: list[str]) -> str:
    """A regex alternation of literal words, longest first so prefixes do not win."""
    ordered = sorted(set(words), key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in ordered)


# --------------------------------------------------------------------------- attribution lines
# "On <date>, <name> wrote:" and its translations. Clients put the verb last (en, fr, es, pt,
# it, sv "Den ... skrev:", pl "W dniu ... napisał:", vi, zh) or right before the sender
# (de "Am ... schrieb X <x@y>:", nl "Op ... schreef X <x@y>:", da/sv Gmail "... skrev X <x@y>:").

# Words a (possibly wrapped) attribution line starts with. Case-sensitive: these are
# sentence-initial in the generated text, and lower-case "on"/"le"/"el" is ordinary prose.
ATTRIBUTION_LEAD_INS = [
    "On",                    # en: Gmail, Apple Mail, Thunderbird, Outlook for Mac
    "Am",                    # de: "Am 01.02.2023 um 10:00 schrieb ..."
    "Le",                    # fr: "Le 23 janv. 2015 à 22:03, X a écrit :"
    "El",                    # es: "El lun, 1 ene 2023 a las 10:00, X escribió:"
    "Em",                    # pt: "Em seg., 1 de jan. de 2023 às 10:00, X escreveu:"
    "Il", "Il giorno",       # it: "Il giorno lun 1 gen 2023 alle ore 10:00 X ha scritto:"
    "Op",                    # nl: "Op 13-02-2014 3:18 schreef X <x@y>:"
    "Den",                   # sv/da/no: "Den 14 september, 2015 02:23:18, X skrev:"
    "På",                    # no: "På 14 september 2015 på 02:23:18, X skrev:"
    "W dniu", "Dnia",        # pl: "W dniu 28 stycznia 2015 01:53 użytkownik X napisał:"
    "Dne",                   # cs: "Dne 1. 1. 2023 v 10:00 X napsal(a):"
    "Vào",                   # vi: "Vào 14:24 8 tháng 6, 2017, X đã viết:"
    "Pada",                  # id/ms: "Pada tanggal ... X menulis:"
    "在", "於",               # zh: "在 2023年1月1日 10:00，X 写道："
]

# Verbs that end an attribution: "... wrote:", "... a écrit :", "... skrev:".
ATTRIBUTION_VERBS = [
    "wrote", "sent", "writes",                          # en ("sent:" is talon's Android variant)
    "schrieb", "geschrieben",                           # de
    "a écrit", "a ecrit", "écrit",                      # fr
    "escribió", "escribio",                             # es
    "escreveu",                                         # pt
    "ha scritto", "scrisse",                            # it
    "schreef", "het volgende geschreven", "geschreven",  # nl
    "skrev",                                            # sv, da, no
    "napisał(a)", "napisał", "napisała", "napisal",     # pl
    "napsal(a)", "napsal", "napsala",                   # cs
    "написал(а)", "написал", "написала", "написав", "пишет", "писал(а)", "пише",  # ru, uk
    "đã viết", "viết",                                  # vi
    "kirjoitti",                                        # fi
    "írta",                                             # hu
    "yazdı",                                            # tr
    "έγραψε",                                           # el
    "menulis",                                          # id
]
# CJK verbs attach to the name without a space: "张三写道：", "홍길동님이 작성:".
ATTRIBUTION_VERBS_CJK = ["写道", "寫道", "님이 작성", "님이 씀", "さんは書きました"]

# Verbs that may be followed by the sender before the colon ("schrieb John <j@x>:").
ATTRIBUTION_VERBS_BEFORE_SENDER = [
    "schrieb", "schreef", "skrev", "napisał(a)", "napisał", "napisała", "napsal(a)",
    "написал(а)", "написал", "escribió", "escreveu", "kirjoitti", "írta",
]

_V = _alt(ATTRIBUTION_VERBS)
_VB = _alt(ATTRIBUTION_VERBS_BEFORE_SENDER)
_VC = _alt(ATTRIBUTION_VERBS_CJK)
_LEAD = _alt(ATTRIBUTION_LEAD_INS)

# An e-mail address as clients print it: "<a@b>", "(a@b)", or bare.
_ADDR = r"[^\s<>()\"']+@[^\s<>()\"']+"

# "... wrote:" / "... a écrit :" / "...写道：" at the very end.
ATTR_VERB_COLON = re.compile(rf"(?:(?<!\w)(?:{_V})|(?:{_VC}))\s*[:：]\s*$", re.IGNORECASE)
# "---- John Smith wrote ----" (Android), "------On 12/29/1987 ... wrote-----".
ATTR_DASH_FRAMED = re.compile(rf"^\s*-{{2,}}+.*?(?<!\w)(?:{_V})\s*-{{2,}}+\s*$", re.IGNORECASE)
# "Am ... schrieb John Doe <john@example.com>:" (the verb before the sender).
ATTR_VERB_SENDER_COLON = re.compile(
    rf"(?<!\w)(?:{_VB})(?!\w).{{0,120}}(?:<\s*{_ADDR}\s*>|\(\s*{_ADDR}\s*\))\s*[:：]\s*$",
    re.IGNORECASE)
# Gmail in ja/ru/zh/ko and several webmails put the date first and no verb at all:
# "2014-10-17 11:28 GMT+03:00 Postmaster <p@x>:", "26.06.2014, 14:41, "A" <a@x>:",
# "Thu, 26 Jun 2014 14:00:51 +0400 от Alexander <a@x>:", "2022年1月1日(金) 9:00 田中 <t@x>:".
_DATE_START = (r"^\s*(?:\d{1,4}\s*[-/.年]\s*\d{1,2}"    # 2014-10-17, 26.06.2014, 2022年1月
               r"|\d{1,2}\s*[.]?\s*[^\W\d_]{3,}"          # 4 dec., 26 Jun
               r"|[^\W\d_]{2,5}\.?,?\s+\d)")             # Thu, 26 / пн, 6 / ons 4
ATTR_DATE_SENDER = re.compile(
    rf"{_DATE_START}.{{0,200}}(?:<\s*{_ADDR}\s*>|\(\s*{_ADDR}\s*\))\s*[:：]\s*$")
# "2011/4/7 Nathan <n@example.com>" (old Gmail: numeric date, sender, no colon).
ATTR_NUMERIC_DATE_SENDER = re.compile(
    rf"^\s*\d{{1,4}}[-/.]\d{{1,2}}[-/.]\d{{1,4}}\b.{{0,100}}<\s*{_ADDR}\s*>\s*$")

# Where a wrapped attribution may start (the window over following lines is only tried
# from such a line): a lead-in word, a date, a weekday abbreviation and a digit, dashes.
ATTR_START = re.compile(rf"^\s*(?:-{{2,}}\s*)?(?:(?:{_LEAD})(?!\w)|\d|[^\W\d_]{{2,5}}\.?,?\s+\d)")
# A lead-in inside a line: "reply On Wed, Apr 4, 2012 at 3:59 PM, bob@x wrote:" (talon).
ATTR_LEAD_IN_MIDLINE = re.compile(rf"(?:\s|(?<!-)-{{2,}}+)(?=(?:{_LEAD})\s)")
ATTR_LEAD_IN = re.compile(rf"^\s*(?:-{{2,}}\s*)?(?:{_LEAD})(?!\w)")
HAS_DATE_OR_ADDR = re.compile(r"\d|@")
HAS_ADDR = re.compile(r"@")


# --------------------------------------------------------------------------- header blocks
# Outlook (and Gmail's rendering of it) quote the previous message under a block of
# "From: / Sent: / To: / Subject:" lines, localised. Keys by role.
HEADER_KEYS: dict[str, list[str]] = {
    "from": [
        "From", "Von", "De", "Fra", "Från", "Van", "Od", "Da", "От", "Від", "Kimden",
        "Lähettäjä", "Feladó", "Odesílatel", "Từ", "发件人", "寄件者", "差出人", "보낸 사람",
        "Afzender", "Avsändare", "Remitente", "Expéditeur", "Absender", "Mittente", "Nadawca",
        "Remetente", "Αποστολέας",
    ],
    "date": [
        "Sent", "Date", "Gesendet", "Datum", "Envoyé", "Envoye", "Sendt", "Skickat", "Verzonden",
        "Verstuurd", "Wysłano", "Wysłane", "Data", "Enviado", "Enviada", "Enviado el", "Fecha",
        "Inviato", "Отправлено", "Дата", "Надіслано", "Gönderildi", "Gönderilme", "Tarih",
        "Lähetetty", "Päivämäärä", "Elküldve", "Dátum", "Odesláno", "Đã gửi", "Ngày",
        "发送时间", "日期", "時間", "傳送時間", "送信日時", "日付", "보낸 날짜", "Sent at", "Dato",
        "Απεστάλη",
    ],
    "to": [
        "To", "An", "À", "A", "Til", "Till", "Aan", "Do", "Para", "Кому", "Kime",
        "Vastaanottaja", "Címzett", "Komu", "Tới", "Đến", "收件人", "收件者", "宛先", "받는 사람",
        "Empfänger", "Destinataire", "Destinatario", "Προς",
    ],
    "cc": [
        "Cc", "Bcc", "Kopie", "Kopia", "DW", "Копия", "Bilgi", "Kopio", "Másolatot kap",
        "抄送", "副本", "참조", "Κοιν",
    ],
    "subject": [
        "Subject", "Betreff", "Objet", "Emne", "Ämne", "Onderwerp", "Temat", "Assunto",
        "Asunto", "Oggetto", "Тема", "Konu", "Aihe", "Tárgy", "Předmět", "Chủ đề", "主题",
        "主旨", "件名", "제목", "Θέμα",
    ],
}
HEADER_KEY_ROLE: dict[str, str] = {
    k.casefold(): role for role, keys in HEADER_KEYS.items() for k in keys}
# "From: x", "*From:* x" (Gmail's text rendering of Outlook's bold keys), "De : x" (French
# spacing), "发件人：x" (full-width colon).
HEADER_LINE = re.compile(
    rf"^[ \t]*[*_]{{0,2}}(?P<key>{_alt([k for ks in HEADER_KEYS.values() for k in ks])})"
    rf"[*_]{{0,2}}[ \t]*[:：][*_]{{0,2}}(?:[ \t\u00a0]|$)",
    re.IGNORECASE)

# A separator line: Outlook's plain-text "________________________________", Gmail's
# " ------------------------------", or an <hr> converted to text.
SEPARATOR_LINE = re.compile(r"^\s*(?:[-_=*]\s?){5,}+\s*$")
# Lines made only of rule characters (dropped at the end of a reply).
RULE_ONLY_LINE = re.compile(r"^\s*[-_=*~•·]+\s*$")


# --------------------------------------------------------------------------- separators
ORIGINAL_MESSAGE_PHRASES = [
    "Original Message", "Original message", "Reply Message",         # Outlook, Yahoo, AOL, Zimbra
    "Ursprüngliche Nachricht", "Ursprungliche Nachricht", "Antwort Nachricht",  # de
    "Message d'origine", "Message original", "Message initial",     # fr
    "Mensaje original",                                             # es
    "Mensagem original",                                            # pt
    "Messaggio originale",                                          # it
    "Oorspronkelijk bericht", "Origineel bericht",                  # nl
    "Originalmeddelande", "Ursprungligt meddelande",                # sv
    "Oprindelig meddelelse", "Original meddelelse",                 # da
    "Opprinnelig melding", "Originalmelding",                       # no
    "Wiadomość oryginalna", "Oryginalna wiadomość",                 # pl
    "Původní zpráva", "Pôvodná správa",                             # cs, sk
    "Исходное сообщение", "Оригинальное сообщение", "Вихідне повідомлення",  # ru, uk
    "Alkuperäinen viesti",                                          # fi
    "Eredeti üzenet",                                               # hu
    "Orijinal Mesaj", "Özgün İleti",                                # tr
    "Thư gốc",                                                      # vi
    "原始邮件", "原始郵件", "元のメッセージ", "원본 메시지",            # zh, ja, ko
]
# "-----Original Message-----", "----- Original Message -----".
ORIGINAL_MESSAGE_LINE = re.compile(
    rf"^\s*[-_=*]{{2,}}+\s*(?:{_alt(ORIGINAL_MESSAGE_PHRASES)})\s*[-_=*]{{2,}}\s*$", re.IGNORECASE)

FORWARD_PHRASES = [
    "Forwarded message", "Forwarded Message", "Forwarded e-mail", "Forwarded email",
    "Weitergeleitete Nachricht", "Weitergeleitete Mail",
    "Message transféré", "Message transmis",
    "Mensaje reenviado", "Mensagem encaminhada", "Messaggio inoltrato",
    "Doorgestuurd bericht", "Vidarebefordrat meddelande", "Videresendt meddelelse",
    "Videresendt melding", "Wiadomość przekazana dalej", "Przekazana wiadomość",
    "Přeposlaná zpráva", "Пересылаемое сообщение", "Пересланное сообщение",
    "Välitetty viesti", "Továbbított üzenet", "İletilen mesaj", "Tin nhắn đã chuyển tiếp",
    "转发的邮件", "轉寄的郵件", "転送されたメッセージ", "전달된 메시지",
]
# Apple Mail / iOS write a sentence instead of a dashed rule.
FORWARD_BEGIN_PHRASES = [
    "Begin forwarded message", "Anfang der weitergeleiteten Nachricht",
    "Début du message réexpédié", "Début du message transféré", "Inicio del mensaje reenviado",
    "Início da mensagem reencaminhada", "Início da mensagem encaminhada",
    "Inizio messaggio inoltrato", "Begin doorgestuurd bericht", "Vidarebefordrat brev",
    "Videresendt brev", "Początek przekazywanej wiadomości", "Начало переадресованного сообщения",
]
FORWARD_LINE = re.compile(
    rf"^\s*(?:[-_=*]{{2,}}+\s*(?:{_alt(FORWARD_PHRASES)})\s*[-_=*]{{2,}}"
    rf"|(?:{_alt(FORWARD_BEGIN_PHRASES)})\s*[:：]?)\s*$",
    re.IGNORECASE)


# --------------------------------------------------------------------------- mobile footers
# Machine-written footers ("Sent from my iPhone" and its translations). A line is a footer
# only if a device/app word follows the preposition within a few words, so prose such as
# "Sent from my desk, is much easier than my phone." or "Sent from a magnificent torch of
# pixels" (github/email_reply_parser fixtures) is kept.
_DEVICE = (
    # brand names: no trailing boundary ("iPhone'a", "BlackBerry®" arrive mis-decoded too)
    r"(?:i\s?phone|ipad|ipod|blackberry|android|samsung|galaxy|htc|nokia|huawei|xiaomi|"
    r"motorola|oneplus|outlook|gmail|yahoo|aol|mailbox|airmail|blue\s?mail|proton\s?mail|"
    r"tutanota|acompli|mail\.ru|айфон|"
    # generic words: whole words only ("pixels" is not a Pixel phone)
    r"(?:apple\s+watch|windows(?:\s+phone)?|mobile|mobil\w*|móvil|movil|portable|smartphone|"
    r"phone|cell(?:phone)?|celular|handy|telef\w*|teléfono|téléphone|tablet\w*|sony|pixel|"
    r"mail|spark|wireless|device|appareil|gerät|terminal|почт\w*|телефон\w*|смартфон\w*|"
    r"di[eê]n\s+thoại)\b)"
)
_SENT = (
    r"(?:sent|posted|enviado|enviada|envoyé|envoye|gesendet|verzonden|verstuurd|skickat|sendt|"
    r"wysłane|wysłano|inviato|отправлено|надіслано|gửi|lähetetty|odesláno)"
)
_FROM = (
    r"(?:from|with|via|using|on|desde|de|do|da|dal|a\s+partir\s+d[eo]|depuis|par|avec|von|mit|"
    r"vom|vanaf|met|från|med|fra|z|ze|с|из|từ|bằng)"
)
_MY = (
    r"(?:my|mi|mon|ma|meu|minha|meinem|meiner|mijn|min|mitt|mojego|mojej|il\s+mio|моего|моей|"
    r"мого|a|an|the|un|une|um|uma)"
)
_WORD = r"[^\s,;:]+\s+"
MOBILE_FOOTER_PATTERNS = [
    # "Sent from my iPhone", "Sent wirelessly from my BlackBerry device on the Bell network",
    # "Enviado desde mi iPhone", "Envoyé de mon iPad", "Verzonden vanaf mijn iPhone",
    # "Skickat från min iPhone", "Sendt fra min iPhone", "Wysłane z mojego iPhone'a",
    # "Inviato da iPhone", "Отправлено с iPhone", "Gửi từ iPhone của tôi", "Sent from Outlook".
    rf"^{_SENT}\s+(?:{_WORD}){{0,2}}?{_FROM}\s+(?:{_MY}\s+)?(?:{_WORD}){{0,3}}?{_DEVICE}",
    # "Von meinem iPhone gesendet" (de), "Von meinem Samsung Galaxy Smartphone gesendet".
    rf"^von\s+meine[mr]?\s+(?:{_WORD}){{0,3}}?{_DEVICE}.*\b(?:gesendet|verschickt)\b",
    # "Get Outlook for iOS" (Outlook mobile), localised.
    r"^(?:get|download|obtenir|obtener|obter|baixe|scarica|hämta|hent|pobierz|получить|"
    r"скачать)\s+(?:\S+\s+){0,2}?outlook\s+(?:for|pour|para|per|för|til|for|dla|для)\s+\S+",
    r"^outlook\s+(?:für|voor)\s+\S+\s+(?:herunterladen|downloaden)",
    # "iPhoneから送信" (ja), "发自我的iPhone" / "从我的iPhone发送" (zh), "Lähetetty iPhonesta" (fi),
    # "iPhone'umdan gönderildi" (tr).
    rf"^{_DEVICE}\S*\s*から送信",
    rf"^(?:发自|發自|寄自|从|從)我的\s*{_DEVICE}",
    rf"^{_DEVICE}\S*\s+gönderildi",
    # "Sent with Sparrow", "Sent via Superhuman" -- app footers that name the app outright.
    r"^(?:sent|envoyé|enviado)\s+(?:with|via|avec|con|com)\s+(?:sparrow|superhuman|newton|"
    r"polymail|spark|airmail|edison|canary|hey)\b",
]
MOBILE_FOOTER = re.compile("|".join(f"(?:{p})" for p in MOBILE_FOOTER_PATTERNS), re.IGNORECASE)


# --------------------------------------------------------------------------- sign-offs
# Formulaic closings that open a signature block ("Regards,\nJane Doe"). Expressions of
# thanks ("Thanks,", "Merci", "Danke") are deliberately absent: they are very often the
# message itself ("Thanks!") and talon's tests keep "Thanks,\nAlex" as reply text.
VALEDICTIONS = [
    # en
    "regards", "best regards", "kind regards", "kindest regards", "warm regards",
    "warmest regards", "many regards", "with regards", "with kind regards", "with best regards",
    "best wishes", "all the best", "best", "sincerely", "yours sincerely", "sincerely yours",
    "yours truly", "yours faithfully", "faithfully", "respectfully", "cheers", "rgds",
    "thanks and regards", "thanks & regards", "thanks and best regards", "many thanks and regards",
    # de
    "mit freundlichen grüßen", "mit freundlichen grüssen", "mit freundlichem gruß",
    "freundliche grüße", "freundliche grüsse", "viele grüße", "viele grüsse", "liebe grüße",
    "liebe grüsse", "beste grüße", "beste grüsse", "herzliche grüße", "herzliche grüsse",
    "schöne grüße", "gruß", "gruss", "grüße", "grüsse", "mfg", "lg", "vg",
    # fr
    "cordialement", "bien cordialement", "bien à vous", "salutations", "meilleures salutations",
    "sincères salutations", "amicalement", "bien amicalement",
    # es, pt, it
    "saludos", "un saludo", "saludos cordiales", "atentamente", "un abrazo", "cordialmente",
    "atenciosamente", "cumprimentos", "abraços", "saudações", "att",
    "cordiali saluti", "distinti saluti", "saluti", "un saluto",
    # nl
    "met vriendelijke groet", "met vriendelijke groeten", "vriendelijke groet",
    "vriendelijke groeten", "hartelijke groet", "hartelijke groeten", "groet", "groeten", "mvg",
    # sv, da, no
    "med vänlig hälsning", "med vänliga hälsningar", "vänliga hälsningar", "vänlig hälsning",
    "bästa hälsningar", "hälsningar", "hälsning", "mvh",
    "med venlig hilsen", "venlig hilsen", "de bedste hilsner", "bedste hilsner", "kærlig hilsen",
    "hilsen", "kh", "vh", "med vennlig hilsen", "vennlig hilsen",
    # pl, cs, hu, fi, tr
    "pozdrawiam", "z poważaniem", "z powazaniem", "pozdrowienia", "serdecznie pozdrawiam",
    "łączę pozdrowienia", "s pozdravem", "üdvözlettel", "ystävällisin terveisin", "terveisin",
    "saygılarımla",
    # ru, uk, vi, zh
    "с уважением", "с наилучшими пожеланиями", "всего доброго", "всего хорошего", "з повагою",
    "trân trọng", "thân ái", "此致敬礼", "此致", "祝好",
]
VALEDICTION_LINE = re.compile(rf"^\s*(?:{_alt(VALEDICTIONS)})\s*[,.!;:]*\s*$", re.IGNORECASE)

# "-Abhishek", "- roman", "-Lev.", "/John" (Scandinavian habit): a name on its own line.
DASH_NAME_LINE = re.compile(r"^[-/~–—]\s?[^\W\d_][^\s\d]*(?:\s+[^\W\d_][^\s\d]*){0,2}\s*$")
POSTSCRIPT = re.compile(r"^p\.?\s?s\b", re.IGNORECASE)
BULLET_LINE = re.compile(r"^\s*(?:[-*•+·–]|\d+[.)])\s")

# The sig-dash ("-- ", RFC 3676 section 4.3) and the shapes people type instead.
SIG_DASH_STRICT = "-- "
SIG_DASH_LINE = re.compile(r"^(?:--|---|—|–|-- )\s*$")

# Mailman/list footer opener: a long underscore rule (the list text follows it).
LIST_FOOTER_RULE = re.compile(r"^_{10,}\s*$")

# Undecoded quoted-printable: soft line breaks plus escaped bytes.
QP_SOFT_BREAK = re.compile(r"=\n")
QP_ESCAPE = re.compile(r"=(?:[89A-F][0-9A-F]|3D|20)")

QUOTE_LINE = re.compile(r"^[ \t]*>")
URLISH = re.compile(r"://|mailto:|www\.", re.IGNORECASE)
PLAIN_WORD = re.compile(r"^[^\W\d_]+[.!?,;:]*$")


# --------------------------------------------------------------------------- HTML clients
# class / id tokens (lower-cased) of containers whose content is quoted history.
HTML_QUOTE_CONTAINERS = frozenset({
    "gmail_quote", "gmail_quote_container",    # Gmail: attribution + blockquote
    "moz-cite-prefix",                         # Thunderbird: the "On ... wrote:" div
    "yahoo_quoted",                            # Yahoo Mail
    "olk_src_body_section",                    # Outlook for Mac
    "mail-editor-reference-message-container",  # new Outlook for Mac
    "protonmail_quote", "tutanota_quote",      # Proton Mail, Tutanota
    "zmail_extra",                             # Zoho Mail
    "appleoriginalcontents",                   # Apple Mail (older)
})
# Token fragments: clients prefix copies of these ("x_gmail_quote" in Outlook web,
# "ydp3c1yahoo_quoted_4417" in Yahoo, "AOLMsgPart_0_4d68..." in AOL).
HTML_QUOTE_CONTAINER_PARTS = ("gmail_quote", "yahoo_quoted", "olk_src_body_section", "aolmsgpart")
# Elements from which on the rest of the document is history: Outlook web/desktop
# (#appendonsend, #divRplyFwdMsg), Hotmail (hr#stopSpelling), Zimbra (hr#zwchr).
HTML_HISTORY_MARKERS = frozenset({
    "divrplyfwdmsg", "x_divrplyfwdmsg", "appendonsend", "outlookmessageheader",
    "stopspelling", "zwchr",
})
# Signature blocks the client marks as such.
HTML_SIGNATURE_TOKENS = frozenset({"gmail_signature", "moz-signature"})
