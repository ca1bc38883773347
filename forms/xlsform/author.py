#!/usr/bin/env python3
"""Authoring source of the Project 8 XLSForms shipped with fieldtally.

Running this script (re)creates every forms/xlsform/<form_id>.xlsx next to it.
The spreadsheets are generated: change this file, not the .xlsx, then regenerate
the XForms with xls2xform (see README.md in this folder).

Requires: openpyxl (installed alongside pyxform 4.5.0).
"""

from __future__ import annotations

import sys
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
VERSION = "2025040301"
VI = "Vietnamese (vi)"
EN = "English (en)"

SURVEY_COLUMNS = [
    "type",
    "name",
    f"label::{VI}",
    f"label::{EN}",
    f"hint::{VI}",
    f"hint::{EN}",
    "required",
    "relevant",
    "constraint",
    f"constraint_message::{VI}",
    f"constraint_message::{EN}",
    "appearance",
    "calculation",
    "parameters",
    "bind::fieldtally:sensitive",
    "bind::fieldtally:beneficiary",
]
CHOICE_COLUMNS = ["list_name", "name", f"label::{VI}", f"label::{EN}"]
SETTINGS_COLUMNS = ["form_id", "version", "form_title", "default_language", "instance_name",
                    "namespaces"]
# fieldtally's own bind attributes (see README.md); declared only in forms that use them, so
# the XForms of the other forms stay as they were.
FIELDTALLY_NAMESPACE = 'fieldtally="urn:fieldtally"'


# --------------------------------------------------------------------------
# Row helpers
# --------------------------------------------------------------------------
def q(type_, name, vi=None, en=None, *, hint=None, required=None, relevant=None,
      constraint=None, msg=None, appearance=None, calculation=None, parameters=None,
      sensitive=None, beneficiary=None):
    """One survey row. `hint` and `msg` are (Vietnamese, English) pairs. `sensitive="yes"`
    marks personal data the server keeps apart; `beneficiary` names the field's part in the
    identity the server derives a pseudonymous key from."""
    if constraint is not None and msg is None:
        raise ValueError(f"{name}: every constraint needs a Vietnamese + English message")
    row = {
        "type": type_,
        "name": name,
        f"label::{VI}": vi,
        f"label::{EN}": en,
        f"hint::{VI}": hint[0] if hint else None,
        f"hint::{EN}": hint[1] if hint else None,
        "required": required,
        "relevant": relevant,
        "constraint": constraint,
        f"constraint_message::{VI}": msg[0] if msg else None,
        f"constraint_message::{EN}": msg[1] if msg else None,
        "appearance": appearance,
        "calculation": calculation,
        "parameters": parameters,
        "bind::fieldtally:sensitive": sensitive,
        "bind::fieldtally:beneficiary": beneficiary,
    }
    return row


def calc(name, expression):
    return q("calculate", name, calculation=expression)


def note(name, vi, en, relevant=None):
    return q("note", name, vi, en, relevant=relevant)


def with_relevant(rows, expression):
    """Make each row relevant only when `expression` holds (AND-ed with its own)."""
    out = []
    for row in rows:
        row = dict(row)
        own = row.get("relevant")
        row["relevant"] = f"({expression}) and ({own})" if own else expression
        out.append(row)
    return out


def nonneg_int(name, vi, en, *, hint=None, required="yes", relevant=None, upper=None,
               upper_msg=None):
    """Integer >= 0, optionally <= another field (`upper` is an XPath expression)."""
    if upper:
        if not upper_msg:
            raise ValueError(f"{name}: a capped number needs its own message")
        constraint = f". >= 0 and . <= {upper}"
        msg = upper_msg
    else:
        constraint = ". >= 0"
        msg = ("Số không được âm.", "The number cannot be negative.")
    return q("integer", name, vi, en, hint=hint, required=required, relevant=relevant,
             constraint=constraint, msg=msg)


def other_text(name, of_field, multiple=False, vi="Ghi rõ nội dung khác",
               en="Specify 'other'"):
    expr = f"selected(${{{of_field}}}, 'other')" if multiple else f"${{{of_field}}} = 'other'"
    return q("text", name, vi, en, required="yes", relevant=expr)


# --------------------------------------------------------------------------
# Blocks shared by every form
# --------------------------------------------------------------------------
def head(activity_hint=None, activity_label=("Ngày diễn ra hoạt động", "Date of the activity")):
    """meta fields, the collector's hamlet and the activity date."""
    activity_hint = activity_hint or (
        "Là ngày tổ chức hoạt động, không phải ngày gửi phiếu. Kết quả được tính "
        "vào kỳ báo cáo theo ngày này.",
        "The day the activity took place, not the day the form is sent. Results "
        "are counted in the reporting period of this date.",
    )
    return [
        q("start", "start"),
        q("end", "end"),
        q("start-geopoint", "start_location"),
        q("select_one_from_file hamlets.csv", "hamlet",
          "Bản (thôn, tiểu khu, tổ dân phố) nơi diễn ra hoạt động",
          "Hamlet (village, sub-area, residential group) where the activity took place",
          hint=("Danh sách chỉ gồm các bản bạn được phân công phụ trách.",
                "The list shows only the hamlets assigned to you."),
          required="yes"),
        q("date", "activity_date", activity_label[0], activity_label[1],
          hint=activity_hint, required="yes", constraint=". <= today()",
          msg=("Ngày hoạt động không được sau ngày hôm nay.",
               "The activity date cannot be in the future.")),
    ]


def location(required="yes", hint=None,
             label=("Vị trí nơi diễn ra hoạt động", "Location of the activity")):
    hint = hint or (
        "Đứng tại nơi tổ chức hoạt động rồi bấm lấy vị trí; nếu có thể, chờ độ chính "
        "xác dưới 20 m.",
        "Stand at the venue and capture the location; if you can, wait for an "
        "accuracy better than 20 m.",
    )
    return q("geopoint", "location", label[0], label[1], hint=hint, required=required)


def photo(vi="Ảnh hoạt động (không bắt buộc)", en="Photo of the activity (optional)",
          hint=None, relevant=None):
    hint = hint or ("Không chụp cận mặt người tham dự nếu họ không đồng ý.",
                    "Do not take close-ups of people's faces without their agreement.")
    return q("image", "photo", vi, en, hint=hint, relevant=relevant,
             parameters="max-pixels=1280")


def attendance_photos():
    return [
        q("image", "attendance_photo",
          "Ảnh chụp danh sách người tham dự (bảng ký tên)",
          "Photo of the attendance sheet",
          hint=("Chụp thẳng, rõ chữ toàn bộ trang có chữ ký. Nếu danh sách có nhiều "
                "trang, chụp trang đầu ở đây và trang tiếp theo ở câu sau.",
                "Take it straight on, with every signature readable. If the sheet has "
                "several pages, take the first page here and the next one below."),
          required="yes", parameters="max-pixels=2048"),
        q("image", "attendance_photo_2",
          "Ảnh trang tiếp theo của danh sách (nếu có)",
          "Photo of the next page of the attendance sheet (if any)",
          parameters="max-pixels=2048"),
    ]


def participants_by_group(with_category=False, child_labels=False):
    """Repeat of participants by (category,) ethnicity and sex, plus top-level totals.

    Field names are read by the server: participants_by_group/{ethnicity,women,men,total}
    and the top-level calculates participants_total, participants_women, ...
    Collect shows no hint on a repeat, so the guidance sits on its first question.
    """
    if child_labels:
        group = ("Thành viên có mặt theo dân tộc", "Members present by ethnicity")
        women = ("Số em nữ có mặt", "Girls present")
        men = ("Số em nam có mặt", "Boys present")
        first_hint = ("Mỗi dân tộc một nhóm: chọn dân tộc rồi nhập số em nữ, số em nam. "
                      "Thêm nhóm mới cho dân tộc tiếp theo; không nhập một dân tộc hai lần.",
                      "One group per ethnicity: choose it, then enter girls and boys. Add "
                      "a new group for the next ethnicity; do not enter one twice.")
    elif with_category:
        group = ("Học viên theo đối tượng và dân tộc", "Participants by category and ethnicity")
        women = ("Số nữ", "Women")
        men = ("Số nam", "Men")
        first_hint = ("Mỗi nhóm là một đối tượng và một dân tộc, ví dụ «Cán bộ cấp xã – "
                      "Thái». Thêm nhóm mới cho tổ hợp tiếp theo; không nhập một tổ hợp "
                      "hai lần.",
                      "Each group is one category and one ethnicity, e.g. 'Commune "
                      "official – Thái'. Add a new group for the next combination; do not "
                      "enter one twice.")
    else:
        group = ("Người tham dự theo dân tộc", "Participants by ethnicity")
        women = ("Số nữ", "Women")
        men = ("Số nam", "Men")
        first_hint = ("Mỗi dân tộc một nhóm: chọn dân tộc rồi nhập số nữ, số nam. Thêm "
                      "nhóm mới cho dân tộc tiếp theo; không nhập một dân tộc hai lần.",
                      "One group per ethnicity: choose it, then enter women and men. Add a "
                      "new group for the next ethnicity; do not enter one twice.")
    rows = [q("begin_repeat", "participants_by_group", group[0], group[1])]
    ethnicity_hint = first_hint
    if with_category:
        rows.append(q("select_one participant_category", "category", "Đối tượng",
                      "Participant category", required="yes", hint=first_hint))
        ethnicity_hint = None
    rows += [
        # No "one row per ethnicity" constraint: JavaRosa (Collect) cannot evaluate
        # current() in a constraint, and duplicate rows do not change the sums.
        q("select_one ethnicity", "ethnicity", "Dân tộc", "Ethnicity", required="yes",
          appearance="autocomplete", hint=ethnicity_hint),
        q("integer", "women", women[0], women[1], required="yes", constraint=". >= 0",
          msg=("Số không được âm.", "The number cannot be negative.")),
        q("integer", "men", men[0], men[1], required="yes",
          constraint=". >= 0 and (. + ${women}) > 0",
          msg=("Số không được âm, và nhóm phải có ít nhất một người.",
               "The number cannot be negative, and the group needs at least one person.")),
        calc("total", "${women} + ${men}"),
        calc("em_total",
             "if(${ethnicity} != '01' and ${ethnicity} != '99', ${total}, 0)"),
        calc("em_women",
             "if(${ethnicity} != '01' and ${ethnicity} != '99', ${women}, 0)"),
        q("end_repeat", None),
        calc("participants_total", "sum(${total})"),
        calc("participants_women", "sum(${women})"),
        calc("participants_men", "sum(${men})"),
        calc("participants_ethnic_minority", "sum(${em_total})"),
        calc("participants_em_women", "sum(${em_women})"),
        note("participants_summary",
             "Tổng cộng: ${participants_total} người (nữ ${participants_women}, nam "
             "${participants_men}); người dân tộc thiểu số: "
             "${participants_ethnic_minority}.",
             "In total: ${participants_total} people (women ${participants_women}, men "
             "${participants_men}); ethnic-minority people: "
             "${participants_ethnic_minority}."),
    ]
    return rows


# --------------------------------------------------------------------------
# Choice lists
# --------------------------------------------------------------------------
YES_NO = [("yes", "Có", "Yes"), ("no", "Không", "No")]

# The 54 ethnic groups with the General Statistics Office codes
# (Danh mục các dân tộc Việt Nam, Quyết định 121-TCTK/PPCĐ ngày 2/3/1979), plus 99.
ETHNICITY = [
    ("01", "Kinh", "Kinh"),
    ("02", "Tày", "Tay"),
    ("03", "Thái", "Thai"),
    ("04", "Hoa", "Hoa (ethnic Chinese)"),
    ("05", "Khơ-me", "Khmer"),
    ("06", "Mường", "Muong"),
    ("07", "Nùng", "Nung"),
    ("08", "Mông (HMông)", "Hmong"),
    ("09", "Dao", "Dao (Yao)"),
    ("10", "Gia-rai", "Jarai (Gia Rai)"),
    ("11", "Ngái", "Ngai"),
    ("12", "Ê-đê", "Ede"),
    ("13", "Ba-na", "Bahnar (Ba Na)"),
    ("14", "Xơ-đăng", "Sedang (Xo Dang)"),
    ("15", "Sán Chay", "San Chay"),
    ("16", "Cơ-ho", "Koho (Co Ho)"),
    ("17", "Chăm", "Cham"),
    ("18", "Sán Dìu", "San Diu"),
    ("19", "Hrê", "Hre"),
    ("20", "Mnông", "Mnong"),
    ("21", "Ra-glai", "Raglai"),
    ("22", "Xtiêng", "Stieng (Xtieng)"),
    ("23", "Bru-Vân Kiều", "Bru-Van Kieu"),
    ("24", "Thổ", "Tho"),
    ("25", "Giáy", "Giay"),
    ("26", "Cơ-tu", "Katu (Co Tu)"),
    ("27", "Gié-Triêng", "Gie Trieng"),
    ("28", "Mạ", "Ma"),
    ("29", "Khơ-mú", "Khmu (Kho Mu)"),
    ("30", "Co", "Co"),
    ("31", "Tà-ôi", "Ta Oi"),
    ("32", "Chơ-ro", "Cho Ro"),
    ("33", "Kháng", "Khang"),
    ("34", "Xinh-mun", "Xinh Mun"),
    ("35", "Hà Nhì", "Ha Nhi"),
    ("36", "Chu-ru", "Chu Ru"),
    ("37", "Lào", "Lao"),
    ("38", "La Chí", "La Chi"),
    ("39", "La Ha", "La Ha"),
    ("40", "Phù Lá", "Phu La"),
    ("41", "La Hủ", "La Hu"),
    ("42", "Lự", "Lu"),
    ("43", "Lô Lô", "Lo Lo"),
    ("44", "Chứt", "Chut"),
    ("45", "Mảng", "Mang"),
    ("46", "Pà Thẻn", "Pa Then"),
    ("47", "Cờ Lao", "Co Lao"),
    ("48", "Cống", "Cong"),
    ("49", "Bố Y", "Bo Y"),
    ("50", "Si La", "Si La"),
    ("51", "Pu Péo", "Pu Peo"),
    ("52", "Brâu", "Brau"),
    ("53", "Ơ Đu", "O Du"),
    ("54", "Rơ Măm", "Ro Mam"),
    ("99", "Người nước ngoài / khác", "Foreign national / other"),
]

ORG_LEVEL = [
    ("province", "Cấp tỉnh", "Province"),
    ("district", "Cấp huyện (trước 1/7/2025)", "District (before 1 July 2025)"),
    ("commune", "Cấp xã", "Commune"),
]


# --------------------------------------------------------------------------
# The forms
# --------------------------------------------------------------------------
FORMS = {}


def form(form_id, title, instance_name, survey, choices, version=VERSION):
    """`version`: a form that changes gets its own new version (Collect keeps both)."""
    FORMS[form_id] = dict(title=title, instance_name=instance_name, survey=survey,
                          choices=choices, version=version)


# ---- safe_birth_outreach --------------------------------------------------
CONSENTED = "${consent} = 'yes'"
form(
    "safe_birth_outreach",
    "Tuyên truyền, tư vấn sinh đẻ an toàn",
    "concat('Tư vấn sinh đẻ an toàn - ', ${activity_date}, ' - ', ${hamlet})",
    head() + [
        note("consent_info",
             "Đọc cho chị nghe: «Hội Liên hiệp Phụ nữ ghi lại họ tên, năm sinh, dân tộc "
             "và nội dung tư vấn của chị để theo dõi, hỗ trợ chị sinh đẻ an toàn. Thông "
             "tin được giữ bí mật, chỉ cán bộ phụ trách được xem. Chị có quyền từ chối; "
             "việc từ chối không ảnh hưởng đến quyền lợi của chị.»",
             "Read aloud: \"The Women's Union records your name, year of birth, "
             "ethnicity and the advice you received, to follow up and support you to "
             "give birth safely. The information is kept confidential and seen only by "
             "the staff in charge. You may refuse; refusing does not affect any of "
             "your entitlements.\""),
        q("select_one yes_no", "consent",
          "Chị có đồng ý để ghi lại thông tin của mình không?",
          "Does she agree that her information is recorded?", required="yes"),
        note("consent_refused_note",
             "Chị không đồng ý nên không ghi thông tin cá nhân. Phiếu kết thúc tại đây: "
             "hãy lưu và gửi phiếu.",
             "She did not agree, so no personal information is recorded. The form ends "
             "here: save and send it.",
             relevant="${consent} = 'no'"),
    ] + with_relevant([
        q("text", "woman_name", "Họ và tên người phụ nữ", "Woman's full name",
          hint=("Ghi đủ họ tên như trên căn cước hoặc giấy tờ tùy thân, để không bị "
                "ghi trùng giữa các lần tư vấn.",
                "Write the full name as on her ID card or papers, so that repeat visits "
                "are not counted twice."),
          required="yes", sensitive="yes", beneficiary="name"),
        q("integer", "birth_year", "Năm sinh", "Year of birth", required="yes",
          beneficiary="birth_year", constraint=". >= 1960 and . <= 2012",
          msg=("Năm sinh phải từ 1960 đến 2012.",
               "Year of birth must be between 1960 and 2012.")),
        q("text", "household_code", "Mã hộ gia đình", "Household code",
          hint=("Mã hộ theo danh sách hộ của bản (ví dụ số thứ tự hộ trong sổ theo "
                "dõi). Dùng đúng một mã cho mọi lần tư vấn cùng một người.",
                "The household's code in the hamlet's household list (e.g. its number "
                "in the register). Use the same code at every visit to the same woman."),
          required="yes", beneficiary="household_code"),
        q("select_one ethnicity", "ethnicity", "Dân tộc", "Ethnicity", required="yes",
          appearance="autocomplete"),
        q("select_one pregnancy_status", "pregnancy_status", "Tình trạng hiện tại của chị",
          "Her current status", required="yes"),
        other_text("pregnancy_status_other", "pregnancy_status", vi="Ghi rõ tình trạng khác",
                   en="Specify the other status"),
        q("select_multiple topics", "topics", "Nội dung đã tư vấn", "Topics counselled",
          hint=("Chọn tất cả các nội dung đã tư vấn.", "Select every topic covered."),
          required="yes"),
        q("select_one yes_no", "referred",
          "Chị có được giới thiệu, kết nối đến cơ sở y tế không?",
          "Was she referred or connected to a health facility?", required="yes"),
        q("select_one referral_place", "referral_place", "Nơi được giới thiệu đến",
          "Referred to", required="yes", relevant="${referred} = 'yes'"),
        other_text("referral_place_other", "referral_place", vi="Ghi rõ nơi được giới thiệu đến",
                   en="Specify where she was referred"),
        q("select_multiple policy_package", "policy_package",
          "Chị đã nhận gói hỗ trợ chính sách nào của Dự án 8 cho lần sinh này?",
          "Which Project 8 policy support packages has she received for this birth?",
          hint=("Chọn tất cả các gói đã nhận; chọn «Chưa nhận gói nào» nếu chưa nhận.",
                "Select every package received; choose 'No package received' if none."),
          required="yes",
          constraint="not(selected(., 'none') and count-selected(.) > 1)",
          msg=("«Chưa nhận gói nào» không được chọn cùng với các gói khác.",
               "'No package received' cannot be combined with a package.")),
        q("integer", "anc_visits_supported",
          "Số lần khám thai đã được hỗ trợ chi phí đi lại",
          "Number of antenatal visits supported (travel costs)",
          hint=("Tối đa 4 lần trong một thai kỳ (100.000 đồng/lần). Nhập 0 nếu chưa "
                "được hỗ trợ lần nào.",
                "At most 4 visits per pregnancy (100,000 VND a visit). Enter 0 if none "
                "has been supported yet."),
          required="yes",
          relevant="count-selected(${policy_package}) > 0 and "
                   "not(selected(${policy_package}, 'none'))",
          constraint=". >= 0 and . <= 4 and "
                     "(. = 0 or selected(${policy_package}, 'antenatal_care'))",
          msg=("Từ 0 đến 4 lần; chỉ lớn hơn 0 khi chị đã nhận gói hỗ trợ chăm sóc "
               "trước sinh.",
               "0 to 4 visits; more than 0 only if she received the antenatal care "
               "package.")),
        location(hint=("Lấy vị trí tại nơi tư vấn.", "Capture the location where the "
                       "counselling took place.")),
        photo(hint=("Chỉ chụp khi chị đồng ý; không bắt buộc.",
                    "Only with her agreement; optional.")),
    ], CONSENTED),
    {
        "yes_no": YES_NO,
        "ethnicity": ETHNICITY,
        "pregnancy_status": [
            ("pregnant", "Đang mang thai", "Pregnant"),
            ("postpartum_42d", "Đã sinh con trong vòng 42 ngày",
             "Gave birth within the last 42 days"),
            ("planning", "Dự định có thai", "Planning a pregnancy"),
            ("other", "Khác", "Other"),
        ],
        "topics": [
            ("antenatal", "Khám thai định kỳ (ít nhất 4 lần)",
             "Antenatal check-ups (at least 4 visits)"),
            ("facility_delivery", "Sinh con tại cơ sở y tế",
             "Giving birth at a health facility"),
            ("danger_signs", "Dấu hiệu nguy hiểm khi mang thai, khi sinh và sau sinh",
             "Danger signs in pregnancy, childbirth and after birth"),
            ("newborn_care", "Chăm sóc trẻ sơ sinh", "Newborn care"),
            ("nutrition", "Dinh dưỡng cho bà mẹ và trẻ nhỏ",
             "Nutrition for mother and child"),
            ("family_planning", "Kế hoạch hóa gia đình", "Family planning"),
        ],
        "referral_place": [
            ("commune_health_station", "Trạm y tế xã", "Commune health station"),
            ("district_hospital", "Bệnh viện, trung tâm y tế huyện (khu vực)",
             "District or regional hospital / health centre"),
            ("provincial_hospital", "Bệnh viện tỉnh", "Provincial hospital"),
            ("other", "Nơi khác", "Elsewhere"),
        ],
        # The four policy packages for ethnic-minority women giving birth safely and
        # for child health (Project 8, content 1; Hướng dẫn 04/HD-ĐCT, 30/HD-ĐCT).
        "policy_package": [
            ("antenatal_care", "Hỗ trợ chăm sóc trước sinh (chi phí đi lại khám thai)",
             "Antenatal care support (travel to antenatal visits)"),
            ("delivery_care", "Hỗ trợ chăm sóc trong sinh (sinh con an toàn)",
             "Support for care during childbirth (safe delivery)"),
            ("postnatal_care", "Hỗ trợ chăm sóc sau sinh",
             "Postnatal care support for mother and newborn"),
            ("child_health", "Hỗ trợ chăm sóc sức khỏe trẻ em", "Child health care support"),
            ("none", "Chưa nhận gói nào", "No package received"),
        ],
    },
    # 2025040302: woman_name marked sensitive, identity fields marked for the beneficiary key.
    version="2025040302",
)

TOTAL_MSG = ("Phải từ 0 đến tổng số người tham dự.",
             "Must be between 0 and the total number of participants.")
MEMBERS_MSG = ("Phải từ 0 đến tổng số thành viên.",
               "Must be between 0 and the total number of members.")

# ---- policy_dialogue ------------------------------------------------------
form(
    "policy_dialogue",
    "Đối thoại chính sách",
    "concat('Đối thoại chính sách - ', ${activity_date}, ' - ', ${hamlet})",
    head() + [
        q("select_one dialogue_level", "level", "Cấp tổ chức đối thoại",
          "Level of the dialogue", required="yes"),
        q("select_one dialogue_topic", "topic", "Chủ đề đối thoại", "Topic of the dialogue",
          required="yes"),
        other_text("topic_other", "topic", vi="Ghi rõ chủ đề khác", en="Specify the other topic"),
        q("text", "chair", "Người chủ trì (họ tên, chức vụ)",
          "Chaired by (name and position)",
          hint=("Ví dụ: Nguyễn Văn A, Chủ tịch UBND xã.",
                "For example: Nguyễn Văn A, Chair of the commune People's Committee."),
          required="yes"),
        q("integer", "participants_total", "Tổng số người tham dự", "Total participants",
          required="yes", constraint=". >= 1",
          msg=("Phải có ít nhất 1 người tham dự.", "There must be at least 1 participant.")),
        nonneg_int("participants_women", "Trong đó: nữ", "Of whom: women",
                   upper="${participants_total}",
                   upper_msg=TOTAL_MSG),
        nonneg_int("participants_ethnic_minority", "Trong đó: người dân tộc thiểu số",
                   "Of whom: ethnic-minority people", upper="${participants_total}",
                   upper_msg=TOTAL_MSG),
        nonneg_int("participants_children", "Trong đó: trẻ em (dưới 16 tuổi)",
                   "Of whom: children (under 16)", upper="${participants_total}",
                   upper_msg=TOTAL_MSG),
        q("text", "issues_raised", "Các vấn đề, kiến nghị được nêu ra",
          "Issues and requests raised",
          hint=("Ghi ngắn gọn từng ý, mỗi ý một dòng.", "Briefly, one issue per line."),
          required="yes", appearance="multiline"),
        q("text", "commitments", "Cam kết, giải đáp của chính quyền và cơ quan chức năng",
          "Commitments and answers from the authorities",
          hint=("Để trống nếu không có cam kết nào.", "Leave empty if there was none."),
          appearance="multiline"),
        location(),
    ] + attendance_photos(),
    {
        "dialogue_level": [
            ("commune", "Cấp xã", "Commune"),
            ("village_cluster", "Cụm thôn, bản", "Village cluster"),
        ],
        "dialogue_topic": [
            ("gender_equality", "Thực hiện chính sách, pháp luật về bình đẳng giới",
             "Gender-equality policy and law in practice"),
            ("domestic_violence", "Phòng, chống bạo lực gia đình",
             "Preventing domestic violence"),
            ("child_consanguineous_marriage", "Tảo hôn, hôn nhân cận huyết thống",
             "Child marriage and consanguineous marriage"),
            ("maternal_child_health", "Sinh đẻ an toàn, chăm sóc sức khỏe bà mẹ và trẻ em",
             "Safe birth, maternal and child health"),
            ("economic_empowerment", "Sinh kế, vay vốn, nâng cao quyền năng kinh tế cho "
             "phụ nữ", "Livelihoods, credit and women's economic empowerment"),
            ("grassroots_democracy", "Thực hành dân chủ ở cơ sở", "Grassroots democracy"),
            ("women_leadership", "Phụ nữ tham gia lãnh đạo, ứng cử",
             "Women in leadership and elections"),
            ("trafficking_migration", "Phòng, chống mua bán người, di cư không an toàn",
             "Preventing human trafficking and unsafe migration"),
            ("other", "Chủ đề khác", "Other topic"),
        ],
    },
)

# ---- training_session -----------------------------------------------------
form(
    "training_session",
    "Tập huấn, bồi dưỡng",
    "concat('Tập huấn - ', ${activity_date}, ' - ', ${hamlet})",
    head(activity_hint=(
        "Ngày khai giảng lớp tập huấn, không phải ngày gửi phiếu. Kết quả được tính vào "
        "kỳ báo cáo theo ngày này.",
        "The first day of the training, not the day the form is sent. Results are "
        "counted in the reporting period of this date.")) + [
        q("select_one training_type", "training_type", "Loại tập huấn", "Type of training",
          required="yes"),
        q("select_one org_level", "organiser_level", "Cấp tổ chức lớp",
          "Level that organised the training", required="yes"),
        q("decimal", "days", "Số ngày tập huấn", "Number of days",
          hint=("Nửa ngày nhập 0.5.", "Enter 0.5 for half a day."), required="yes",
          constraint=". > 0 and . <= 15",
          msg=("Số ngày phải lớn hơn 0 và không quá 15.",
               "Days must be more than 0 and at most 15.")),
    ] + participants_by_group(with_category=True) + [
        location(),
        photo(),
    ],
    {
        "training_type": [
            ("gender_mainstreaming",
             "Bình đẳng giới, kỹ năng lồng ghép giới (cán bộ, trưởng thôn/bản, chức sắc "
             "tôn giáo, người có uy tín)",
             "Gender equality and gender mainstreaming (officials, hamlet heads, "
             "religious dignitaries, people of prestige)"),
            ("ge_monitoring", "Giám sát, đánh giá về bình đẳng giới cho cán bộ xã, thôn",
             "Gender-equality monitoring and evaluation for commune and hamlet officials"),
            ("em_women_leadership",
             "Nâng cao năng lực lãnh đạo cho cán bộ nữ dân tộc thiểu số",
             "Leadership capacity for ethnic-minority women officials"),
            ("comm_team_capacity", "Nâng cao năng lực Tổ truyền thông cộng đồng",
             "Capacity building for community communication teams"),
            ("club_facilitators",
             "Bồi dưỡng dẫn trình viên, Ban chủ nhiệm CLB «Thủ lĩnh của sự thay đổi»",
             "Training for facilitators and boards of Leaders of Change clubs"),
        ],
        "org_level": ORG_LEVEL,
        "participant_category": [
            ("district_official", "Cán bộ cấp huyện", "District official"),
            ("commune_official", "Cán bộ cấp xã", "Commune official"),
            ("hamlet_head", "Trưởng thôn, bản; già làng", "Hamlet head or village elder"),
            ("hamlet_official", "Cán bộ thôn, bản khác", "Other hamlet official"),
            ("religious_dignitary", "Chức sắc tôn giáo", "Religious dignitary"),
            ("prestige_person", "Người có uy tín trong cộng đồng",
             "Person of prestige in the community"),
            ("comm_team_member", "Thành viên Tổ truyền thông cộng đồng",
             "Community communication team member"),
            ("club_facilitator", "Dẫn trình viên, Ban chủ nhiệm CLB",
             "Club facilitator or board member"),
            ("union_member", "Hội viên, cán bộ chi/tổ Hội Phụ nữ",
             "Women's Union member or branch officer"),
            ("other", "Đối tượng khác", "Other"),
        ],
        "ethnicity": ETHNICITY,
    },
)

# ---- communication_session ------------------------------------------------
form(
    "communication_session",
    "Sinh hoạt Tổ truyền thông cộng đồng",
    "concat('Tổ truyền thông ', ${team_code}, ' - ', ${activity_date}, ' - ', ${hamlet})",
    head() + [
        q("text", "team_code", "Mã Tổ truyền thông cộng đồng",
          "Community communication team code",
          hint=("Mã do Hội Phụ nữ xã cấp cho tổ; dùng đúng một mã cho mọi buổi sinh hoạt.",
                "The code the commune Women's Union gave the team; always use the same "
                "code."),
          required="yes"),
        q("select_one session_format", "session_format", "Hình thức truyền thông",
          "Format of the session", required="yes"),
        q("select_multiple comm_topic", "topics", "Chủ đề truyền thông",
          "Topics covered",
          hint=("Chọn tất cả các chủ đề của buổi sinh hoạt.", "Select every topic covered."),
          required="yes"),
        other_text("topics_other", "topics", multiple=True, vi="Ghi rõ chủ đề khác",
                   en="Specify the other topic"),
        q("select_multiple language", "language_used", "Ngôn ngữ sử dụng",
          "Language(s) used", required="yes"),
        other_text("language_other", "language_used", multiple=True,
                   vi="Ghi rõ tiếng dân tộc khác", en="Specify the other language"),
    ] + participants_by_group() + [
        location(),
        photo(),
    ],
    {
        "session_format": [
            ("direct", "Sinh hoạt, truyền thông trực tiếp tại cộng đồng",
             "Face-to-face session in the community"),
            ("home_visit", "Thăm hộ gia đình, tư vấn nhóm nhỏ",
             "Home visits or small-group counselling"),
            ("mobile", "Truyền thông lưu động", "Mobile communication"),
            ("contest_festival", "Hội thi, liên hoan, giao lưu",
             "Contest, festival or exchange"),
            ("digital", "Trên nền tảng số (Zalo, Facebook…)",
             "On digital platforms (Zalo, Facebook…)"),
        ],
        "comm_topic": [
            ("child_marriage", "Tảo hôn", "Child marriage"),
            ("consanguineous_marriage", "Hôn nhân cận huyết thống",
             "Consanguineous marriage"),
            ("home_birth", "Sinh đẻ tại nhà, sinh đẻ an toàn", "Home birth and safe birth"),
            ("many_children", "Sinh nhiều con", "Having many children"),
            ("domestic_violence", "Bạo lực gia đình", "Domestic violence"),
            ("gender_stereotypes", "Định kiến, khuôn mẫu giới, bất bình đẳng giới",
             "Gender stereotypes and inequality"),
            ("harmful_customs", "Tập tục văn hóa có hại", "Harmful customs"),
            ("trafficking", "Mua bán người, di cư không an toàn",
             "Human trafficking and unsafe migration"),
            ("project8", "Giới thiệu Dự án 8 và kết quả thực hiện",
             "Project 8 and its results"),
            ("other", "Chủ đề khác", "Other topic"),
        ],
        "language": [
            ("vietnamese", "Tiếng Việt (tiếng phổ thông)", "Vietnamese"),
            ("thai", "Tiếng Thái", "Thai"),
            ("mong", "Tiếng Mông", "Hmong"),
            ("muong", "Tiếng Mường", "Muong"),
            ("dao", "Tiếng Dao", "Dao"),
            ("khmu", "Tiếng Khơ-mú", "Khmu"),
            ("xinh_mun", "Tiếng Xinh-mun", "Xinh Mun"),
            ("khang", "Tiếng Kháng", "Khang"),
            ("lao", "Tiếng Lào", "Lao"),
            ("la_ha", "Tiếng La Ha", "La Ha"),
            ("other", "Tiếng dân tộc khác", "Another ethnic language"),
        ],
        "ethnicity": ETHNICITY,
    },
)

# ---- club_meeting ---------------------------------------------------------
form(
    "club_meeting",
    "Sinh hoạt CLB «Thủ lĩnh của sự thay đổi»",
    "concat('Sinh hoạt CLB ', ${club_code}, ' - ', ${activity_date}, ' - ', ${hamlet})",
    head() + [
        q("text", "club_code", "Mã câu lạc bộ", "Club code",
          hint=("Mã do Hội Phụ nữ cấp cho CLB; dùng đúng một mã cho mọi buổi sinh hoạt.",
                "The code the Women's Union gave the club; always use the same code."),
          required="yes"),
        q("select_one club_type", "club_type", "CLB hoạt động ở đâu?",
          "Where is the club based?", required="yes"),
        q("text", "school_name", "Tên trường", "Name of the school", required="yes",
          relevant="${club_type} = 'school'"),
        q("select_multiple club_topic", "topics", "Chủ đề sinh hoạt", "Topics of the meeting",
          required="yes"),
        other_text("topics_other", "topics", multiple=True, vi="Ghi rõ chủ đề khác",
                   en="Specify the other topic"),
        q("integer", "members_enrolled", "Tổng số thành viên của CLB",
          "Total members of the club",
          hint=("Số thành viên đang sinh hoạt trong CLB, kể cả các em vắng mặt hôm nay.",
                "Current members, including those absent today."),
          required="yes", constraint=". >= 1",
          msg=("CLB phải có ít nhất 1 thành viên.", "The club needs at least 1 member.")),
    ] + participants_by_group(child_labels=True) + [
        location(),
        photo(hint=("Không chụp cận mặt các em; chụp toàn cảnh buổi sinh hoạt.",
                    "No close-ups of children's faces; photograph the meeting as a "
                    "whole.")),
    ],
    {
        "club_type": [
            ("school", "Trong trường học (THCS)", "In a school (lower secondary)"),
            ("community", "Tại cộng đồng", "In the community"),
        ],
        "club_topic": [
            ("gender_equality", "Bình đẳng giới", "Gender equality"),
            ("child_marriage", "Phòng, chống tảo hôn, hôn nhân cận huyết thống",
             "Preventing child and consanguineous marriage"),
            ("abuse_violence", "Phòng, chống xâm hại, bạo lực trẻ em",
             "Preventing child abuse and violence"),
            ("trafficking", "Phòng, chống mua bán người", "Preventing human trafficking"),
            ("life_skills", "Kỹ năng sống", "Life skills"),
            ("child_rights", "Quyền trẻ em, quyền được tham gia",
             "Children's rights and participation"),
            ("reproductive_health", "Sức khỏe sinh sản vị thành niên",
             "Adolescent reproductive health"),
            ("other", "Chủ đề khác", "Other topic"),
        ],
        "ethnicity": ETHNICITY,
    },
)

# ---- livelihood_support ---------------------------------------------------
form(
    "livelihood_support",
    "Hỗ trợ mô hình sinh kế ứng dụng khoa học công nghệ",
    "concat('Hỗ trợ mô hình ', ${group_code}, ' - ', ${activity_date}, ' - ', ${hamlet})",
    head() + [
        q("text", "group_code", "Mã tổ nhóm, hợp tác xã", "Group or co-operative code",
          hint=("Mã do Hội Phụ nữ cấp; dùng đúng một mã cho mọi lần hỗ trợ.",
                "The code given by the Women's Union; always use the same code."),
          required="yes"),
        q("text", "group_name", "Tên tổ nhóm, tổ hợp tác, hợp tác xã",
          "Name of the group or co-operative", required="yes"),
        q("select_one group_type", "group_type", "Loại mô hình", "Kind of group",
          required="yes"),
        q("select_one women_role", "women_role", "Vai trò của phụ nữ",
          "Role of women in the group", required="yes"),
        q("text", "main_product", "Sản phẩm, dịch vụ chính", "Main product or service"),
        q("select_multiple tech_support", "support_types",
          "Nội dung hỗ trợ ứng dụng khoa học công nghệ",
          "Technology support provided",
          hint=("Chọn tất cả các nội dung đã hỗ trợ trong lần này.",
                "Select every kind of support given this time."),
          required="yes"),
        q("text", "support_description", "Mô tả ngắn nội dung hỗ trợ",
          "Short description of the support", appearance="multiline"),
        nonneg_int("support_amount_vnd", "Kinh phí hỗ trợ (đồng)", "Funds provided (VND)",
                   hint=("Để trống nếu chưa rõ.", "Leave empty if not known."),
                   required=None),
        q("integer", "members_total", "Tổng số thành viên", "Total members",
          required="yes", constraint=". >= 1",
          msg=("Mô hình phải có ít nhất 1 thành viên.",
               "The group needs at least 1 member.")),
        nonneg_int("members_women", "Trong đó: nữ", "Of whom: women",
                   upper="${members_total}",
                   upper_msg=MEMBERS_MSG),
        nonneg_int("members_ethnic_minority", "Trong đó: người dân tộc thiểu số",
                   "Of whom: ethnic-minority people", upper="${members_total}",
                   upper_msg=MEMBERS_MSG),
        location(),
        photo(),
    ],
    {
        "group_type": [
            ("livelihood_group", "Tổ, nhóm sinh kế", "Livelihood group"),
            ("cooperative_group", "Tổ hợp tác", "Co-operative group"),
            ("cooperative", "Hợp tác xã", "Co-operative"),
        ],
        "women_role": [
            ("owner", "Phụ nữ làm chủ", "Led by women"),
            ("co_owner", "Phụ nữ đồng làm chủ", "Co-led by women"),
        ],
        # The six kinds of technology support named in the 2025 plan (content 2).
        "tech_support": [
            ("branding", "Xây dựng thương hiệu", "Branding"),
            ("standards_registration", "Đăng ký các tiêu chuẩn theo quy định",
             "Registration of the required standards"),
            ("traceability_quality",
             "Xây dựng truy xuất nguồn gốc, tập huấn quản lý chất lượng",
             "Traceability and quality-management training"),
            ("ecommerce", "Hỗ trợ tham gia thương mại điện tử", "Joining e-commerce"),
            ("logistics_epayment",
             "Kết nối dịch vụ logistics và thanh toán điện tử",
             "Connection to logistics services and e-payment"),
            ("technical_advice", "Tư vấn, hỗ trợ kỹ thuật cho tổ nhóm",
             "Technical advice for the group"),
        ],
    },
)

# ---- aggregate reports (no names, no personal identifiers) ----------------
REPORT_DATE_LABEL = ("Ngày thuộc tháng báo cáo", "A date in the reporting month")
REPORT_DATE_HINT = (
    "Chọn một ngày trong tháng báo cáo (thường là ngày cuối tháng, hoặc hôm nay nếu "
    "tháng chưa kết thúc). Số liệu được tính vào tháng của ngày này.",
    "Pick a day in the month you report on (usually its last day, or today if the "
    "month is not over). The figures count towards that month.",
)
PRIVACY_NOTE = note(
    "privacy_note",
    "Phiếu này chỉ ghi số liệu tổng hợp. Không ghi tên, địa chỉ, số điện thoại hay bất "
    "kỳ thông tin nào giúp nhận ra người được hỗ trợ.",
    "This form records totals only. Never write names, addresses, phone numbers or "
    "anything else that could identify a person who was supported.",
)
PERIOD = [
    calc("period_month", "format-date(${activity_date}, '%Y-%m')"),
    note("period_note", "Tháng báo cáo: ${period_month}", "Reporting month: ${period_month}"),
]
REPORT_LOCATION = location(
    required=None,
    label=("Vị trí điểm hỗ trợ của mô hình (không bắt buộc)",
           "Location of the model's support point (optional)"),
    hint=("Chỉ lấy vị trí điểm sinh hoạt hoặc trụ sở của mô hình; "
          "tuyệt đối không lấy vị trí nhà của người được hỗ trợ.",
          "Capture only the model's meeting point or office, never the home "
          "of a person who was supported."))
ACTIVE = "${model_active} = 'yes'"
PEOPLE_LE = "${people_supported_women} + ${people_supported_men}"
CASES_MSG = ("Phải từ 0 đến số vụ việc tiếp nhận mới trong tháng.",
             "Must be between 0 and the number of new cases received this month.")
PEOPLE_MSG = ("Không được lớn hơn tổng số người được hỗ trợ (nữ + nam).",
              "Cannot exceed the number of people supported (women + men).")

form(
    "trusted_address_report",
    "Báo cáo mô hình «Địa chỉ tin cậy»",
    "concat('Địa chỉ tin cậy ', ${model_code}, ' - ', ${period_month}, ' - ', ${hamlet})",
    head(activity_hint=REPORT_DATE_HINT, activity_label=REPORT_DATE_LABEL) + PERIOD + [
        PRIVACY_NOTE,
        q("text", "model_code", "Mã mô hình «Địa chỉ tin cậy»", "Trusted-address model code",
          hint=("Mã do Hội Phụ nữ cấp cho mô hình.", "The code given by the Women's Union."),
          required="yes"),
        q("select_one yes_no", "model_active", "Trong tháng, mô hình có hoạt động không?",
          "Was the model active this month?", required="yes"),
    ] + with_relevant([
        nonneg_int("cases_received", "Số vụ việc tiếp nhận mới trong tháng",
                   "New cases received this month"),
        note("violence_type_note",
             "Số vụ theo hình thức bạo lực (một vụ có thể có nhiều hình thức):",
             "Cases by form of violence (one case may involve several forms):"),
        nonneg_int("violence_physical", "Bạo lực thể chất", "Physical violence",
                   upper="${cases_received}", upper_msg=CASES_MSG),
        nonneg_int("violence_psychological", "Bạo lực tinh thần", "Psychological violence",
                   upper="${cases_received}", upper_msg=CASES_MSG),
        nonneg_int("violence_sexual", "Bạo lực tình dục", "Sexual violence",
                   upper="${cases_received}", upper_msg=CASES_MSG),
        nonneg_int("violence_economic", "Bạo lực kinh tế", "Economic violence",
                   upper="${cases_received}", upper_msg=CASES_MSG),
        note("support_type_note",
             "Số vụ được hỗ trợ theo hình thức hỗ trợ (một vụ có thể được hỗ trợ nhiều "
             "hình thức):",
             "Cases supported, by kind of support (one case may get several kinds):"),
        nonneg_int("cases_counselling", "Tư vấn, tham vấn", "Counselling"),
        nonneg_int("cases_shelter", "Tạm lánh", "Temporary shelter"),
        nonneg_int("cases_health_referral", "Kết nối dịch vụ y tế",
                   "Referral to health services"),
        nonneg_int("cases_legal_referral", "Kết nối trợ giúp pháp lý, công an",
                   "Referral to legal aid or the police"),
        nonneg_int("cases_livelihood", "Kết nối sinh kế, việc làm",
                   "Connection to livelihoods or jobs"),
        nonneg_int("cases_other_support", "Hình thức hỗ trợ khác", "Other support"),
        nonneg_int("people_supported_women", "Số người được hỗ trợ: nữ",
                   "People supported: women"),
        nonneg_int("people_supported_men", "Số người được hỗ trợ: nam",
                   "People supported: men"),
        nonneg_int("people_supported_children", "Trong đó: trẻ em (dưới 16 tuổi)",
                   "Of whom: children (under 16)", upper=PEOPLE_LE, upper_msg=PEOPLE_MSG),
        nonneg_int("people_supported_ethnic_minority", "Trong đó: người dân tộc thiểu số",
                   "Of whom: ethnic-minority people", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
        nonneg_int("awareness_sessions",
                   "Số buổi truyền thông phòng, chống bạo lực gia đình",
                   "Domestic-violence prevention awareness sessions"),
        nonneg_int("awareness_participants", "Số lượt người tham dự các buổi truyền thông",
                   "Attendance at those sessions"),
    ], ACTIVE) + [
        REPORT_LOCATION,
    ],
    {"yes_no": YES_NO},
)

form(
    "trafficking_livelihood_report",
    "Báo cáo mô hình hỗ trợ sinh kế cho nạn nhân mua bán người",
    "concat('Mô hình sinh kế ', ${model_code}, ' - ', ${period_month}, ' - ', ${hamlet})",
    head(activity_hint=REPORT_DATE_HINT, activity_label=REPORT_DATE_LABEL) + PERIOD + [
        PRIVACY_NOTE,
        q("text", "model_code", "Mã mô hình", "Model code",
          hint=("Mã do Hội Phụ nữ cấp cho mô hình.", "The code given by the Women's Union."),
          required="yes"),
        q("select_one yes_no", "model_active", "Trong tháng, mô hình có hoạt động không?",
          "Was the model active this month?", required="yes"),
    ] + with_relevant([
        nonneg_int("people_supported_women", "Số người được hỗ trợ trong tháng: nữ",
                   "People supported this month: women"),
        nonneg_int("people_supported_men", "Số người được hỗ trợ trong tháng: nam",
                   "People supported this month: men"),
        nonneg_int("people_new", "Trong đó: số người mới tham gia mô hình trong tháng",
                   "Of whom: people who joined the model this month", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
        nonneg_int("people_supported_ethnic_minority", "Trong đó: người dân tộc thiểu số",
                   "Of whom: ethnic-minority people", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
        note("support_type_note",
             "Số người được hỗ trợ theo nội dung (một người có thể được hỗ trợ nhiều "
             "nội dung):",
             "People supported, by kind of support (one person may get several kinds):"),
        nonneg_int("people_vocational_training", "Học nghề", "Vocational training",
                   upper=PEOPLE_LE, upper_msg=PEOPLE_MSG),
        nonneg_int("people_job_counselling",
                   "Nâng cao kiến thức về công việc tạo thu nhập, tư vấn việc làm",
                   "Income-generation knowledge and job counselling", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
        nonneg_int("people_livelihood_model", "Tham gia mô hình sinh kế tại địa phương",
                   "Joining a local livelihood model", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
        nonneg_int("people_credit", "Kết nối vay vốn từ các tổ chức tài chính",
                   "Access to loans from financial institutions", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
        nonneg_int("people_technical_advice", "Tư vấn, hỗ trợ kỹ thuật và kỹ năng quản lý",
                   "Technical advice and management skills", upper=PEOPLE_LE,
                   upper_msg=PEOPLE_MSG),
    ], ACTIVE) + [
        REPORT_LOCATION,
    ],
    {"yes_no": YES_NO},
)

# ---- supervision_visit ----------------------------------------------------
form(
    "supervision_visit",
    "Kiểm tra, giám sát thực hiện Dự án 8",
    "concat('Kiểm tra, giám sát - ', ${activity_date}, ' - ', ${hamlet})",
    head() + [
        q("select_one org_level", "supervisor_level", "Đoàn kiểm tra, giám sát cấp",
          "Level of the supervising team", required="yes"),
        q("select_one visit_type", "visit_type", "Hình thức", "Kind of visit",
          required="yes"),
        q("select_multiple p8_activity", "activities_checked",
          "Nội dung được kiểm tra, giám sát", "Activities checked", required="yes"),
        other_text("activities_checked_other", "activities_checked", multiple=True),
        q("text", "findings", "Kết quả kiểm tra, giám sát", "Findings", required="yes",
          appearance="multiline"),
        q("select_one assessment", "assessment", "Đánh giá chung", "Overall assessment",
          required="yes"),
        q("text", "recommendations", "Kiến nghị, đề xuất", "Recommendations",
          appearance="multiline"),
        q("select_one yes_no", "follow_up_needed", "Có cần kiểm tra lại, khắc phục không?",
          "Is follow-up needed?", required="yes"),
        q("date", "follow_up_by", "Thời hạn khắc phục", "Follow-up deadline",
          required="yes", relevant="${follow_up_needed} = 'yes'",
          constraint=". >= ${activity_date}",
          msg=("Thời hạn không được trước ngày kiểm tra.",
               "The deadline cannot be before the visit date.")),
        location(),
        photo(),
    ],
    {
        "org_level": ORG_LEVEL,
        "visit_type": [
            ("inspection", "Kiểm tra", "Inspection"),
            ("supervision", "Giám sát", "Supervision"),
            ("technical_support", "Hỗ trợ kỹ thuật", "Technical support"),
        ],
        "p8_activity": [
            ("communication_team", "Tổ truyền thông cộng đồng",
             "Community communication teams"),
            ("safe_birth", "Tư vấn sinh đẻ an toàn", "Safe-birth outreach"),
            ("policy_packages", "Chi trả các gói chính sách", "Policy package payments"),
            ("livelihood_model", "Mô hình sinh kế ứng dụng khoa học công nghệ",
             "Livelihood groups applying technology"),
            ("trusted_address", "Mô hình «Địa chỉ tin cậy»", "Trusted-address models"),
            ("trafficking_model", "Mô hình sinh kế cho nạn nhân mua bán người",
             "Livelihood models for trafficking victims"),
            ("policy_dialogue", "Đối thoại chính sách", "Policy dialogues"),
            ("club", "CLB «Thủ lĩnh của sự thay đổi»", "Leaders of Change clubs"),
            ("training", "Tập huấn, bồi dưỡng", "Training"),
            ("records_reporting", "Sổ sách, số liệu báo cáo", "Records and reported data"),
            ("other", "Nội dung khác", "Other"),
        ],
        "assessment": [
            ("good", "Tốt", "Good"),
            ("satisfactory", "Đạt yêu cầu", "Satisfactory"),
            ("needs_improvement", "Cần khắc phục", "Needs improvement"),
        ],
        "yes_no": YES_NO,
    },
)


# --------------------------------------------------------------------------
# Checks and writing
# --------------------------------------------------------------------------
def check(form_id, spec):
    names = [r["name"] for r in spec["survey"] if r["name"]]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"{form_id}: duplicate field names {dupes}"
    for list_name, items in spec["choices"].items():
        cnames = [c[0] for c in items]
        assert len(cnames) == len(set(cnames)), f"{form_id}/{list_name}: duplicate choices"
        for c in items:
            assert len(c) == 3 and all(c), f"{form_id}/{list_name}: incomplete choice {c}"
    used = set()
    for r in spec["survey"]:
        parts = r["type"].split()
        if parts[0] in ("select_one", "select_multiple"):
            used.add(parts[1])
    missing = used - set(spec["choices"])
    assert not missing, f"{form_id}: choice lists not defined: {missing}"
    unused = set(spec["choices"]) - used
    assert not unused, f"{form_id}: choice lists not used: {unused}"
    for r in spec["survey"]:
        if r["type"] not in ("start", "end", "start-geopoint", "calculate", "end_repeat"):
            assert r[f"label::{VI}"] and r[f"label::{EN}"], f"{form_id}/{r['name']}: label"


def write(form_id, spec, out_dir):
    wb = Workbook()
    survey = wb.active
    survey.title = "survey"
    survey.append(SURVEY_COLUMNS)
    for row in spec["survey"]:
        survey.append([row.get(col) for col in SURVEY_COLUMNS])
    choices = wb.create_sheet("choices")
    choices.append(CHOICE_COLUMNS)
    for list_name, items in spec["choices"].items():
        for name, vi, en in items:
            choices.append([list_name, name, vi, en])
    settings = wb.create_sheet("settings")
    settings.append(SETTINGS_COLUMNS)
    uses_fieldtally = any(row.get(col) for row in spec["survey"] for col in SURVEY_COLUMNS
                          if col.startswith("bind::fieldtally:"))
    settings.append([form_id, spec["version"], spec["title"], VI, spec["instance_name"],
                     FIELDTALLY_NAMESPACE if uses_fieldtally else None])
    path = out_dir / f"{form_id}.xlsx"
    wb.save(path)
    return path


def main(argv):
    out_dir = Path(argv[1]) if len(argv) > 1 else HERE
    out_dir.mkdir(parents=True, exist_ok=True)
    assert len(ETHNICITY) == 55 and [c[0] for c in ETHNICITY[:54]] == [
        f"{i:02d}" for i in range(1, 55)]
    for form_id, spec in FORMS.items():
        check(form_id, spec)
        print(write(form_id, spec, out_dir))


if __name__ == "__main__":
    main(sys.argv)
