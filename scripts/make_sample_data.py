#!/usr/bin/env python
"""Generate a small synthetic dataset in the exact layout of Kaggle's Eedi competition.

    python scripts/make_sample_data.py --out data/sample --seed 0

Writes ``train.csv``, ``test.csv``, ``misconception_mapping.csv`` and
``sample_submission.csv``. Every question is procedural: the correct answer is computed,
and each wrong answer is produced by a specific buggy procedure, whose name (written the
way teachers phrase misconceptions) is the label. So the retrieval task is learnable: a
model must recognise which bug turns the question into that wrong answer, not only the
topic. About a fifth of the misconceptions in the mapping are never used (distractors,
as in the real corpus), label frequencies are long-tailed, and ~12% of wrong answers are
left unlabelled. Output is deterministic for a seed (byte-identical CSVs).

No text is taken from the real competition files; only their column layout is copied.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Callable, NamedTuple

# ---------------------------------------------------------------------------------------
# Misconceptions: key -> name. Keys referenced by no generator are corpus distractors.
# ---------------------------------------------------------------------------------------

MISCONCEPTIONS: dict[str, str] = {
    # fractions: adding / subtracting
    "frac_add_num_den": "Adds the numerators and adds the denominators when adding fractions",
    "frac_sub_num_den": "Subtracts the numerators and subtracts the denominators when subtracting fractions",
    "frac_mult_den_keep_num": "When adding or subtracting fractions, multiplies the denominators but does not change the numerators",
    "frac_keep_one_den": "Adds or subtracts the numerators but keeps one of the denominators without finding a common denominator",
    "frac_mult_instead_add": "Multiplies the fractions when the question asks to add them",
    "frac_add_instead_sub": "Adds the fractions when the question asks to subtract them",
    # fractions: multiplying / dividing
    "frac_mult_flip": "Flips the second fraction when multiplying fractions, as if it were a division",
    "frac_mult_add_all": "Adds the numerators and the denominators when asked to multiply fractions",
    "frac_mult_add_den": "Multiplies the numerators but adds the denominators when multiplying fractions",
    "frac_div_no_flip": "Multiplies the fractions without taking the reciprocal of the divisor when dividing",
    "frac_div_flip_first": "Takes the reciprocal of the first fraction instead of the second when dividing fractions",
    "frac_div_flip_both": "Takes the reciprocal of both fractions before multiplying when dividing fractions",
    "frac_int_mult_both": "Multiplies both the numerator and the denominator by the integer when multiplying a fraction by an integer",
    "frac_int_mult_den": "Multiplies the denominator instead of the numerator when multiplying a fraction by an integer",
    "frac_int_add_num": "Adds the integer to the numerator instead of multiplying when multiplying a fraction by an integer",
    # fractions: simplifying / mixed numbers
    "frac_not_fully": "Stops simplifying after dividing by a common factor that is not the highest",
    "frac_simplify_subtract": "Subtracts the same number from the top and the bottom, thinking this keeps the value the same",
    "frac_simplify_one": "Divides only one of the two numbers by the common factor",
    "mixed_add_whole": "Adds the whole number to the numerator when converting a mixed number to an improper fraction",
    "mixed_mult_num": "Multiplies the whole number by the numerator instead of by the denominator when converting a mixed number",
    "mixed_concat": "Writes the whole number in front of the numerator",
    "mixed_keep_den_mult": "Multiplies the whole number by the denominator but forgets to add the numerator",
    # order of operations
    "bidmas_ltr": "Carries out operations from left to right regardless of priority order",
    "bidmas_add_before_sub": "Believes addition must be carried out before subtraction",
    "bidmas_add_sub_first": "Carries out addition and subtraction before multiplication and division",
    "bidmas_mult_before_div": "Believes multiplication must be carried out before division",
    "bidmas_ignores_brackets": "Ignores the brackets and carries out the multiplication first",
    "bidmas_power_whole": "Applies the power to the whole calculation before it instead of only to the number it is attached to",
    "pow_coefficient": "Applies the power to the coefficient as well as to the number or letter it is attached to",
    "pow_times_two": "Thinks squaring a number means multiplying it by 2",
    # place value
    "pv_digit_only": "Gives the digit itself rather than the value it represents in the number",
    "pv_one_column_out": "Is one column out when identifying the place value of a digit",
    "pv_counts_from_left": "Counts the place value columns from the left of the number instead of from the ones column",
    "pv_dec_mirror": "Thinks the columns after the decimal point are tens, hundreds and thousands",
    "pv_dec_one_out": "Confuses tenths, hundredths and thousandths, being one column out after the decimal point",
    "pv_append_zeros": "Adds zeros to the end of a decimal when multiplying by a power of ten",
    "pv_wrong_direction": "Moves the decimal point the wrong way when multiplying or dividing by a power of ten",
    "pv_moves_too_few": "Moves the digits one place too few when multiplying or dividing by a power of ten",
    "pv_moves_too_many": "Moves the digits one place too many when multiplying or dividing by a power of ten",
    # negative numbers
    "neg_ignore_sign": "Ignores the negative signs and treats all the numbers as positive",
    "neg_add_more_negative": "Believes adding a positive number to a negative number makes the answer more negative",
    "neg_wrong_sign": "Gets the size of the answer right but the sign wrong",
    "neg_sub_neg_smaller": "Thinks subtracting a negative number makes the answer smaller",
    "neg_two_neg_neg": "Believes multiplying two negative numbers gives a negative answer",
    "neg_pos_neg_pos": "Believes multiplying a positive number by a negative number gives a positive answer",
    "neg_div_neg_neg": "Believes dividing a negative number by a negative number gives a negative answer",
    "mult_adds_instead": "Adds the numbers instead of multiplying them",
    "neg_diff_subtracts": "Finds the difference between a negative and a positive number by subtracting the digits",
    # area, perimeter
    "area_perim_confuse": "Confuses area and perimeter",
    "area_adds_sides": "Adds the lengths instead of multiplying them to find the space inside a shape",
    "area_units_length": "Gives an area in units of length rather than square units",
    "tri_area_no_half": "Does not divide by two when calculating the area of a triangle",
    "area_uses_slant": "Uses the sloping length instead of the perpendicular height",
    "para_halves": "Halves the product of base and height when the shape is not a triangle",
    "perim_two_sides": "Only adds the side lengths that are labelled on the diagram",
    "perim_misses_side": "Misses out one side when adding up all the sides of a shape",
    "trap_no_half": "Forgets to divide by 2 at the end of the formula",
    "trap_mult_sides": "Multiplies the two parallel lengths instead of adding them",
    "trap_one_side": "Uses only one of the parallel sides",
    "perim_square_two": "Divides by 2 instead of 4, thinking the total is shared between two sides",
    "perim_square_sqrt": "Square roots the total distance around a square, confusing it with the space inside",
    # circles
    "circ_radius_not_diam": "Uses the radius where the formula needs the diameter",
    "circ_area_confuse": "Mixes up the two formulae that involve pi",
    "circ_diam_as_radius": "Uses the distance right across the shape where the formula needs the distance from the centre",
    "circ_squares_pi": "Squares every value in the formula, including pi",
    # volume
    "vol_adds": "Adds the lengths instead of multiplying them",
    "vol_sa_confuse": "Confuses volume and surface area",
    "vol_two_dims": "Only multiplies two of the three lengths",
    "vol_units_sq": "Gives a volume in square units rather than cubic units",
    "sa_no_double": "Only counts three of the faces, forgetting that opposite faces are equal",
    # angles
    "ang_line_360": "Thinks a straight line is a full turn",
    "ang_line_90": "Thinks a straight line makes a right angle",
    "ang_assume_equal": "Assumes two values are equal because they look the same size",
    "ang_tri_360": "Uses 360 degrees as the total for the angles in a triangle",
    "ang_tri_one": "Subtracts only one of the given values from the total",
    "ang_adds_given": "Adds the given values together and gives this as the answer instead of subtracting them from the total",
    "ang_point_180": "Thinks a full turn is 180 degrees",
    "ang_vo_supp": "Confuses vertically opposite angles with angles on a straight line",
    "ang_vo_comp": "Thinks vertically opposite angles add up to 90 degrees",
    "poly_n180": "Thinks every side of a shape adds another 180 degrees to the total",
    "poly_n_minus_1": "Splits a shape into one more triangle than is possible from a single vertex",
    "poly_always_360": "Thinks the angles inside any shape always add up to a full turn",
    "par_alt_co": "Confuses alternate angles with co-interior angles",
    "par_co_equal": "Thinks co-interior angles are equal",
    "par_co_360": "Thinks co-interior angles add up to 360 degrees",
    "par_corr_supp": "Thinks corresponding angles add up to 180 degrees",
    "ang_comp_supp": "Confuses complementary and supplementary angles",
    # percentages
    "pct_subtracts": "Subtracts the percentage from the amount instead of finding that percentage of it",
    "pct_only_10": "Finds 10% of the amount but does not scale it to the percentage required",
    "pct_div_10": "Divides by 10 rather than by 100 when working out a percentage",
    "pct_finds_remaining": "Finds the amount left after taking the percentage away rather than the percentage itself",
    "pct_divides_by_pct": "Divides the amount by the percentage number",
    "pct_25_half": "Thinks 25% of an amount is found by halving it",
    "pct_forgets_add": "Finds the percentage of the amount but does not add it on to the original to increase it",
    "pct_forgets_sub": "Finds the percentage of the amount but does not subtract it from the original to decrease it",
    "pct_adds_number": "Treats the percentage as an amount to add or subtract",
    "pct_inc_dec_confuse": "Decreases the amount when asked to increase it by a percentage, or the other way round",
    "fpct_concat": "Writes the two numbers side by side to form a new number",
    "fpct_num_only": "Uses the top number only and ignores the bottom number",
    "fpct_decimal_percent": "Puts a percent sign on the decimal without multiplying by 100",
    "dec_pct_x10": "Multiplies by 10 instead of 100",
    "dec_pct_x1000": "Multiplies by 1000 instead of 100",
    # rounding
    "round_truncate": "Truncates the number instead of rounding, always rounding down",
    "round_wrong_place": "Rounds to the wrong place value column",
    "round_always_up": "Always rounds up, even when the deciding digit is less than 5",
    "round_drops_zeros": "Removes the placeholder zeros when rounding, changing the size of the number",
    "round_sf_dp_confuse": "Confuses decimal places and significant figures",
    "round_leading_zeros": "Counts leading zeros as significant figures",
    "est_exact": "Works out the exact answer instead of rounding first",
    "est_rounds_integer": "Rounds to the nearest integer rather than to one significant figure when estimating",
    # powers and roots
    "pow_mult_by_power": "Thinks raising to a power means multiplying the base by the power",
    "pow_adds": "Adds the power to the base instead of using repeated multiplication",
    "pow_swaps": "Swaps the base and the power",
    "pow_mult_powers": "Multiplies the indices when multiplying powers with the same base",
    "pow_mult_bases": "Multiplies the bases as well as adding the indices when multiplying powers",
    "pow_mult_both": "Multiplies both the bases and the indices when multiplying powers with the same base",
    "pow_div_powers": "Divides the indices when dividing powers with the same base",
    "pow_div_bases": "Divides the bases as well as subtracting the indices when dividing powers",
    "pow_add_when_div": "Adds the indices when dividing powers with the same base",
    "pow_add_power_of_power": "Adds the indices when raising a power to another power",
    "pow_zero_zero": "Thinks any number raised to the power of zero equals zero",
    "pow_zero_itself": "Thinks a number raised to the power of zero is the number itself",
    "pow_neg_negative": "Thinks a negative index makes the answer a negative number",
    # expanding
    "exp_first_term": "Only multiplies the first term inside the bracket by the term outside",
    "exp_adds_outside": "Adds the term outside the bracket instead of multiplying by it",
    "exp_neg_sign": "Forgets that a negative multiplied by a negative gives a positive",
    "exp_x_times_x": "Thinks x multiplied by x equals 2x",
    "exp_double_fl": "Only multiplies the first terms together and the last terms together",
    "exp_double_adds_consts": "Adds the two constants instead of multiplying them when expanding double brackets",
    "exp_double_mult_middle": "Multiplies the constants to find the coefficient of x when expanding double brackets",
    "exp_sq_two_terms": "Believes squaring a bracket means squaring each term inside it",
    "exp_sq_single_middle": "Only includes one middle term when squaring a bracket",
    # algebra simplifying
    "alg_combine_unlike": "Tries to add or subtract unlike terms",
    "alg_drops_term": "Leaves out a term when collecting like terms",
    "alg_sign_belongs": "Does not keep the sign in front of a term with that term when collecting like terms",
    "alg_adds_coefs_mult": "Adds the coefficients when multiplying algebraic terms",
    "alg_concat": "Writes the coefficients next to each other instead of multiplying them",
    "alg_a_times_a_is_a": "Thinks multiplying a letter by itself leaves it unchanged",
    # substitution
    "sub_concat": "Writes the coefficient and the substituted value side by side instead of multiplying",
    "sub_adds": "Adds the coefficient and the substituted value instead of multiplying",
    "sub_neg_square": "Believes squaring a negative number gives a negative answer",
    # equations
    "eq_wrong_inverse": "Adds instead of subtracting when moving a term to the other side of an equation",
    "eq_div_first": "Divides only one term by the coefficient before dealing with the constant",
    "eq_mult_inverse": "Multiplies instead of dividing to undo a multiplication when solving an equation",
    "eq_sub_coef": "Subtracts the coefficient of x instead of dividing by it",
    "eq_div_inverse": "Divides instead of multiplying to undo a division when solving an equation",
    "eq_add_inverse": "Adds the divisor to undo a division when solving an equation",
    "eq_both_sides_add": "Adds the x terms instead of subtracting when collecting them on one side of an equation",
    "eq_ignores_one_x": "Ignores the x term on one side of an equation",
    # ratio
    "ratio_div_by_part": "Divides the total by one part of the ratio instead of by the total number of parts",
    "ratio_one_part": "Finds the value of one part but does not multiply by the number of parts needed",
    "ratio_as_fraction": "Treats the ratio a:b as the fraction a over b of the total",
    "ratio_not_fully": "Does not fully simplify a ratio",
    "ratio_order": "Writes the parts of a ratio in the wrong order",
    "ratio_one_side": "Divides only one side of a ratio when simplifying",
    "ratio_additive": "Uses an additive relationship instead of a multiplicative one in a ratio problem",
    "ratio_total_confuse": "Gives the total of both parts instead of the part asked for",
    # averages
    "mean_no_divide": "Finds the total but does not divide by how many values there are",
    "mean_median_confuse": "Confuses the mean with the median",
    "mean_wrong_count": "Divides by the wrong number of values when finding the mean",
    "median_unordered": "Finds the middle value of a list without putting the data in order first",
    "median_gives_position": "Gives the position of the median rather than the median value",
    "median_even_one": "Picks one of the two middle values instead of finding the value halfway between them",
    "mode_gives_freq": "Gives the frequency of the mode rather than the value that occurs most often",
    "mode_largest": "Thinks the mode is the largest value in the data",
    "mode_median_confuse": "Confuses the mode with the median",
    "range_largest": "Thinks the spread of a set of data is given by its largest value",
    "range_unordered": "Uses the first and last values in the list instead of the largest and smallest",
    "range_adds": "Adds the largest and smallest values instead of subtracting them",
    # units
    "unit_cm_m_10": "Thinks there are 10 cm in a metre",
    "unit_cm_m_1000": "Thinks there are 1000 cm in a metre",
    "unit_wrong_op": "Divides instead of multiplies (or multiplies instead of divides) when converting between units",
    "unit_mm_cm_100": "Thinks there are 100 mm in a centimetre",
    "unit_kg_100": "Thinks there are 100 g in a kilogram or 100 ml in a litre",
    "unit_area_linear": "Uses the length conversion factor when converting between units of area",
    # written multiplication
    "mult_tens_ones_only": "Multiplies the tens by the tens and the ones by the ones only in long multiplication",
    "mult_no_placeholder": "Forgets to use a zero placeholder when multiplying by the tens digit",
    "mult_one_digit": "Only multiplies by one of the digits of the second number",
    "dec_mult_dp": "Counts the wrong number of decimal places in the answer when multiplying decimals",
    "dec_mult_ignore": "Ignores the decimal points and multiplies as if the numbers were integers",
    # factors, multiples, primes
    "lcm_product": "Thinks the lowest common multiple of two numbers is always their product",
    "hcf_lcm_confuse": "Confuses the highest common factor with the lowest common multiple",
    "lcm_larger": "Gives the larger of the two numbers as the answer",
    "hcf_any_common": "Gives a common factor that is not the highest common factor",
    "hcf_smaller": "Thinks the highest common factor is the smaller of the two numbers",
    "prime_one": "Thinks 1 is a prime number",
    "prime_odd": "Believes all odd numbers are prime",
    "prime_not_checking": "Only checks for divisibility by 2, 3 and 5",
    # sequences
    "seq_diff_as_const": "Uses the common difference as the constant term in the nth term rule",
    "seq_first_as_const": "Uses the first term as the constant in the nth term rule",
    "seq_only_diff": "Only uses the common difference, missing out the constant in the nth term rule",
    "seq_term_to_term": "Gives the term-to-term rule instead of the nth term rule",
    "seq_forgets_const": "Ignores the constant in the nth term rule when generating terms",
    "seq_starts_at_zero": "Substitutes n = 0 to find the first term of a sequence",
    # straight line graphs / coordinates
    "grad_int_confuse": "Mixes up the number multiplying x and the number on its own in a linear equation",
    "grad_includes_x": "Gives a term with the letter still attached when asked for a number",
    "grad_ignores_sign": "Ignores the negative sign in front of a term",
    "int_coord_order": "Puts a value in the wrong position of a coordinate pair",
    "grad_inverted": "Divides the change in x by the change in y when finding a gradient",
    "grad_no_divide": "Gives the change in y as the gradient without dividing by the change in x",
    "grad_sign": "Subtracts the coordinates in an inconsistent order, getting the wrong sign for the gradient",
    # pythagoras
    "pyth_adds": "Adds the two shorter lengths to find the longest length",
    "pyth_no_root": "Forgets to square root at the final step",
    "pyth_doubles": "Doubles the side lengths instead of squaring them when using Pythagoras' theorem",
    "pyth_adds_squares_short": "Adds the squares instead of subtracting them when finding a shorter side",
    "pyth_subtracts_sides": "Subtracts the lengths directly instead of working with their squares",
    # ---- distractors: in the corpus but never produced by any generator ----
    "time_decimal": "Thinks there are 100 minutes in an hour",
    "prob_ratio": "Writes a probability as favourable outcomes over unfavourable outcomes",
    "ineq_no_flip": "Does not reverse the inequality sign when dividing both sides by a negative number",
    "dec_longer_bigger": "Thinks a decimal with more digits after the point is the larger number",
    "sqrt_halves": "Halves the number instead of finding its square root",
    "col_no_carry": "Does not carry when a column total is ten or more",
    "x_frac_same_den_first": "Converts both fractions to the same denominator but does not change the numerators",
    "x_frac_add_dens_common": "Finds a common denominator but then adds the denominators together in the answer",
    "x_frac_mult_common_den": "Thinks a common denominator is needed before multiplying fractions",
    "x_frac_div_parts": "Divides the numerators and divides the denominators when dividing fractions, even when they do not divide exactly",
    "x_bidmas_right_left": "Thinks the order of operations means working from right to left",
    "x_pv_zero_ignored": "Ignores zero placeholders when reading or writing a number",
    "x_neg_larger_sign": "Believes the sign of the larger number always decides the sign of the answer when multiplying",
    "x_area_units_convert": "Does not convert the lengths to the same units before calculating an area",
    "x_tri_area_add": "Thinks the area of a triangle is the base plus the height divided by two",
    "x_perim_double_one": "Doubles only one of the side lengths when finding the perimeter of a rectangle",
    "x_circ_pi_three": "Uses 3 as the value of pi when asked to give an exact answer",
    "x_ang_quad_180": "Believes the angles in a quadrilateral add up to 180 degrees",
    "x_par_alt_supp": "Thinks alternate angles add up to 180 degrees",
    "x_pct_change_base": "Divides by the new value instead of the original value when finding a percentage change",
    "x_pct_reverse": "Finds a percentage of the new amount when asked to find the original amount",
    "x_round_every_digit": "Rounds every digit of the number rather than only the required place value column",
    "x_pow_fraction_index": "Thinks a fractional index means dividing by the denominator",
    "x_pow_sub_when_mult": "Subtracts the indices when multiplying powers with the same base",
    "x_exp_bracket_double": "Thinks a squared bracket can be written as two times the bracket",
    "x_exp_add_first": "Adds the terms inside each bracket before multiplying when expanding double brackets",
    "x_alg_order_letters": "Thinks ab and ba are different terms that cannot be collected",
    "x_eq_rhs": "Thinks the solution of an equation is the number on the right-hand side",
    "x_eq_div_wrong_way": "Divides the coefficient by the constant instead of the constant by the coefficient",
    "x_ratio_out_of": "Thinks the ratio a:b means a out of b",
    "x_ratio_equal_share": "Shares the total equally instead of in the given ratio",
    "x_median_range": "Thinks the median is the value halfway between the largest and smallest values",
    "x_mode_bimodal": "Thinks a set of data can only have one mode",
    "x_fact_mult_confuse": "Confuses factors and multiples",
    "x_seq_first_times_n": "Thinks the nth term of a sequence is the first term multiplied by n",
    "x_pyth_any_triangle": "Thinks Pythagoras' theorem can be used in any triangle",
}

# ---------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------


def m(s) -> str:
    """Wrap in inline LaTeX delimiters as the competition does."""
    return f"\\( {s} \\)"


def frac(n: int, d: int) -> str:
    return f"\\frac{{{n}}}{{{d}}}"


def fr(x: Fraction) -> str:
    """Fraction in lowest terms; integers without a bar."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    sign = "-" if x < 0 else ""
    return f"{sign}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def dec(x) -> str:
    """Plain decimal string without exponent or trailing zeros."""
    d = Decimal(str(x)) if not isinstance(x, Decimal) else x
    if d == d.to_integral_value():
        return str(int(d))
    s = format(d.normalize(), "f")
    return s


PI = "\\( \\pi \\)"
SQ_CM = "\\( \\mathrm{cm}^{2} \\)"
SQ_MM = "\\( \\mathrm{mm}^{2} \\)"


def pct(p) -> str:
    return m(f"{p} \\%")


def money(n) -> str:
    return m(f"\\£ {n}")


def times(a, b) -> str:
    return m(f"{a} \\times {b}")


def celsius(x) -> str:
    return m(f"{x}^{{\\circ}} \\mathrm{{C}}")


def deg(x) -> str:
    return m(f"{x}^{{\\circ}}")


def unit(x, u: str, power: int = 1) -> str:
    p = f"^{{{power}}}" if power > 1 else ""
    return m(f"{x} \\mathrm{{~{u}}}{p}")


class Cand(NamedTuple):
    text: str
    key: str | None


class Question(NamedTuple):
    text: str
    correct: str
    cands: list[Cand]


NAMES = ["Tom", "Katie", "Amir", "Priya", "Jonah", "Mei", "Sam", "Lucy", "Omar", "Freya", "Dev", "Hannah"]


def pick(r: random.Random, options):
    return options[r.randrange(len(options))]


def intro(r: random.Random, *options: str) -> str:
    return pick(r, list(options))


# ---------------------------------------------------------------------------------------
# Generators: one per construct. Each returns (question, correct answer, candidates).
# ---------------------------------------------------------------------------------------


def g_frac_add(r):
    b, d = r.sample(range(3, 10), 2)
    a, c = r.randrange(1, b), r.randrange(1, d)
    ans = Fraction(a, b) + Fraction(c, d)
    expr = f"{frac(a, b)}+{frac(c, d)}"
    q = intro(r, f"Calculate: {m(expr)}", f"Work out {m(expr)}\nGive your answer in its simplest form.",
              f"What is {m(expr)} ?", f"{r.choice(NAMES)} is adding two fractions:\n\\[\n{expr}\n\\]\nWhat is the answer?")
    cands = [Cand(m(frac(a + c, b + d)), "frac_add_num_den"),
             Cand(m(frac(a + c, b * d)), "frac_mult_den_keep_num"),
             Cand(m(frac(a + c, max(b, d))), "frac_keep_one_den"),
             Cand(m(fr(Fraction(a * c, b * d))), "frac_mult_instead_add")]
    return Question(q, m(fr(ans)), cands)


def g_frac_sub(r):
    while True:
        d, b = sorted(r.sample(range(3, 10), 2))  # b > d
        a, c = r.randrange(2, b), r.randrange(1, d)
        if Fraction(a, b) > Fraction(c, d) and a > c:
            break
    ans = Fraction(a, b) - Fraction(c, d)
    expr = f"{frac(a, b)}-{frac(c, d)}"
    q = intro(r, f"Calculate: {m(expr)}", f"Work out {m(expr)}", f"\\(\n{expr}=\\bigstar\n\\)\nWhat should replace the star?")
    cands = [Cand(m(frac(a - c, b - d)), "frac_sub_num_den"),
             Cand(m(frac(a - c, b * d)), "frac_mult_den_keep_num"),
             Cand(m(frac(a - c, b)), "frac_keep_one_den"),
             Cand(m(fr(Fraction(a, b) + Fraction(c, d))), "frac_add_instead_sub")]
    return Question(q, m(fr(ans)), cands)


def g_frac_mult(r):
    b, d = r.sample(range(2, 10), 2)
    a, c = r.randrange(1, b), r.randrange(1, d)
    expr = f"{frac(a, b)} \\times {frac(c, d)}"
    q = intro(r, f"Calculate: {m(expr)}", f"Work out {m(expr)}", f"What is {m(expr)} ? Simplify your answer if possible.")
    cands = [Cand(m(fr(Fraction(a * d, b * c))), "frac_mult_flip"),
             Cand(m(frac(a + c, b + d)), "frac_mult_add_all"),
             Cand(m(frac(a * c, b + d)), "frac_mult_add_den")]
    return Question(q, m(fr(Fraction(a * c, b * d))), cands)


def g_frac_div(r):
    b, d = r.sample(range(2, 10), 2)
    a, c = r.randrange(1, b), r.randrange(1, d)
    expr = f"{frac(a, b)} \\div {frac(c, d)}"
    q = intro(r, f"Calculate: {m(expr)}", f"Work out {m(expr)}", f"What is the answer to {m(expr)} ?")
    cands = [Cand(m(fr(Fraction(a * c, b * d))), "frac_div_no_flip"),
             Cand(m(fr(Fraction(b * c, a * d))), "frac_div_flip_first"),
             Cand(m(fr(Fraction(b * d, a * c))), "frac_div_flip_both")]
    return Question(q, m(fr(Fraction(a * d, b * c))), cands)


def g_frac_int(r):
    b = r.randrange(3, 12)
    a = r.randrange(1, b)
    n = r.randrange(2, 7)
    expr = f"{n} \\times {frac(a, b)}"
    q = intro(r, f"Calculate: {m(expr)}", f"Work out {m(expr)}", f"{r.choice(NAMES)} multiplies {m(frac(a, b))} by {m(n)}. What answer should they get?")
    cands = [Cand(m(frac(n * a, n * b)), "frac_int_mult_both"),
             Cand(m(frac(a, n * b)), "frac_int_mult_den"),
             Cand(m(frac(a + n, b)), "frac_int_add_num")]
    return Question(q, m(frac(n * a, b)), cands)


def g_frac_simplify(r):
    p, q_ = r.sample(range(1, 10), 2)
    while math.gcd(p, q_) != 1:
        p, q_ = r.sample(range(1, 10), 2)
    k = pick(r, [4, 6, 8, 9, 10, 12])
    part = pick(r, [f for f in range(2, k) if k % f == 0])
    n, d = k * p, k * q_
    s = r.randrange(1, min(n, d))
    q = intro(r, f"Write {m(frac(n, d))} in its simplest form.", f"Simplify fully: {m(frac(n, d))}",
              f"{r.choice(NAMES)} wants to simplify {m(frac(n, d))}. What is the fraction in its simplest form?")
    cands = [Cand(m(frac(n // part, d // part)), "frac_not_fully"),
             Cand(m(frac(n - s, d - s)), "frac_simplify_subtract"),
             Cand(m(frac(p, d)), "frac_simplify_one")]
    return Question(q, m(frac(p, q_)), cands)


def g_mixed(r):
    w, d = r.randrange(1, 6), r.randrange(3, 10)
    n = r.randrange(1, d)
    mixed = f"{w} {frac(n, d)}"
    q = intro(r, f"Write {m(mixed)} as an improper fraction.", f"Convert the mixed number {m(mixed)} into an improper fraction.",
              f"Which of these is equal to {m(mixed)} ?")
    cands = [Cand(m(frac(w + n, d)), "mixed_add_whole"),
             Cand(m(frac(w * n + d, d)), "mixed_mult_num"),
             Cand(m(frac(int(f"{w}{n}"), d)), "mixed_concat"),
             Cand(m(frac(w * d, d)), "mixed_keep_den_mult")]
    return Question(q, m(frac(w * d + n, d)), cands)


def g_bidmas_ops(r):
    t = r.randrange(4)
    if t == 0:  # a - b + c x d
        c, d = r.randrange(2, 7), r.randrange(2, 7)
        b = r.randrange(2, 10)
        a = r.randrange(b + 3, 30)
        expr, ans = f"{a}-{b}+{c} \\times {d}", a - b + c * d
        cands = [Cand(m((a - b + c) * d), "bidmas_ltr"), Cand(m(a - (b + c * d)), "bidmas_add_before_sub"),
                 Cand(m(a - (b + c) * d), "bidmas_add_before_sub")]
    elif t == 1:  # (a + b) x c - d
        a, b, c = r.randrange(2, 9), r.randrange(2, 9), r.randrange(2, 6)
        d = r.randrange(1, 10)
        expr, ans = f"({a}+{b}) \\times {c}-{d}", (a + b) * c - d
        cands = [Cand(m(a + b * c - d), "bidmas_ignores_brackets"), Cand(m(a + b * (c - d)), "bidmas_ignores_brackets"),
                 Cand(m((a + b) * (c - d)), "bidmas_add_sub_first")]
    elif t == 2:  # a / b x c + d
        b, c = r.randrange(2, 6), r.randrange(2, 6)
        a = b * c * r.randrange(1, 5)
        d = r.randrange(1, 10)
        expr, ans = f"{a} \\div {b} \\times {c}+{d}", a // b * c + d
        cands = [Cand(m(fr(Fraction(a, b * c) + d)), "bidmas_mult_before_div"), Cand(m(fr(Fraction(a, b * (c + d)))), "bidmas_mult_before_div"),
                 Cand(m(a // b * (c + d)), "bidmas_add_sub_first")]
    else:  # a + b x c - d
        a, b, c = r.randrange(2, 10), r.randrange(2, 10), r.randrange(2, 10)
        d = r.randrange(1, 10)
        expr, ans = f"{a}+{b} \\times {c}-{d}", a + b * c - d
        cands = [Cand(m((a + b) * c - d), "bidmas_ltr"), Cand(m((a + b) * (c - d)), "bidmas_add_sub_first"), Cand(m(a + b * (c - d)), "bidmas_add_sub_first")]
    q = intro(r, f"Calculate: {m(expr)}", f"What is the value of {m(expr)} ?", f"\\[\n{expr}\n\\]\nWork this out.",
              f"{r.choice(NAMES)} works out {m(expr)}. What is the correct answer?")
    return Question(q, m(ans), cands)


def g_bidmas_pow(r):
    t = r.randrange(3)
    a, b = r.randrange(2, 10), r.randrange(2, 7)
    if t == 0:  # a + b^2
        expr, ans = f"{a}+{b}^{{2}}", a + b * b
        cands = [Cand(m((a + b) ** 2), "bidmas_power_whole"), Cand(m(a + 2 * b), "pow_times_two"), Cand(m(2 * (a + b)), "pow_times_two")]
    elif t == 1:  # a x b^2
        expr, ans = f"{a} \\times {b}^{{2}}", a * b * b
        cands = [Cand(m((a * b) ** 2), "pow_coefficient"), Cand(m(a * b * 2), "pow_times_two"), Cand(m(a * b + 2), None)]
    else:  # c - a x b^2 ... keep positive: c + a x b^2
        c = r.randrange(2, 20)
        expr, ans = f"{c}+{a} \\times {b}^{{2}}", c + a * b * b
        cands = [Cand(m((c + a) * b * b), "bidmas_ltr"), Cand(m(c + (a * b) ** 2), "pow_coefficient"), Cand(m(c + a * b * 2), "pow_times_two")]
    q = intro(r, f"Calculate: {m(expr)}", f"Work out the value of {m(expr)}", f"What is {m(expr)} ?")
    return Question(q, m(ans), cands)


COLS = ["ones", "tens", "hundreds", "thousands", "ten thousands", "hundred thousands"]


def g_pv_int(r):
    ndig = r.randrange(5, 7)
    digits = r.sample(range(1, 10), ndig)
    num = int("".join(map(str, digits)))
    p = r.randrange(1, ndig - 1)  # column index from the right, avoid the ends
    digit = digits[ndig - 1 - p]
    numtxt = f"{num:,}".replace(",", "\\,")
    if r.random() < 0.5:
        q = intro(r, f"What is the value of the {m(digit)} in the number {m(numtxt)} ?",
                  f"In the number {m(numtxt)}, what is the {m(digit)} worth?")
        cands = [Cand(m(digit), "pv_digit_only"), Cand(m(digit * 10 ** (p + 1)), "pv_one_column_out"),
                 Cand(m(digit * 10 ** (p - 1)), "pv_one_column_out"), Cand(m(digit * 10 ** (ndig - 1 - p)), "pv_counts_from_left")]
        return Question(q, m(digit * 10 ** p), cands)
    q = intro(r, f"Which column is the {m(digit)} in, in the number {m(numtxt)} ?",
              f"In {m(numtxt)} the digit {m(digit)} is in which place value column?")
    cands = [Cand(COLS[p + 1].capitalize(), "pv_one_column_out"), Cand(COLS[p - 1].capitalize(), "pv_one_column_out"),
             Cand(COLS[ndig - 1 - p].capitalize(), "pv_counts_from_left")]
    return Question(q, COLS[p].capitalize(), cands)


def g_pv_dec(r):
    digits = r.sample(range(1, 10), 4)
    whole = digits[0]
    num = f"{whole}.{digits[1]}{digits[2]}{digits[3]}"
    p = r.randrange(1, 4)
    digit = digits[p]
    if r.random() < 0.5:
        names = {1: "Tenths", 2: "Hundredths", 3: "Thousandths"}
        mirror = {1: "Tens", 2: "Hundreds", 3: "Thousands"}
        q = intro(r, f"In the number {m(num)}, which column is the {m(digit)} in?", f"What is the place value of the {m(digit)} in {m(num)} ?")
        cands = [Cand(mirror[p], "pv_dec_mirror")]
        cands += [Cand(names[o], "pv_dec_one_out") for o in (p - 1, p + 1) if o in names]
        cands += [Cand("Ones", None)]
        return Question(q, names[p], cands)
    q = intro(r, f"What is the value of the {m(digit)} in {m(num)} ?", f"In {m(num)}, what is the {m(digit)} worth?")
    val = Decimal(digit) / Decimal(10) ** p
    cands = [Cand(m(digit * 10 ** p), "pv_dec_mirror"), Cand(m(digit), "pv_digit_only")]
    cands += [Cand(m(dec(Decimal(digit) / Decimal(10) ** o)), "pv_dec_one_out") for o in (p - 1, p + 1) if 1 <= o <= 4]
    return Question(q, m(dec(val)), cands)


def g_pv_pow10(r):
    x = Decimal(r.randrange(101, 999)) / Decimal(10) ** r.randrange(1, 3)
    k = r.randrange(1, 4)
    f = 10 ** k
    if r.random() < 0.55:
        expr, ans = f"{dec(x)} \\times {f}", x * f
        cands = [Cand(m(dec(x) + ("0" * k if "." in dec(x) else "." + "0" * k)), "pv_append_zeros"),
                 Cand(m(dec(x / f)), "pv_wrong_direction"), Cand(m(dec(x * f / 10)), "pv_moves_too_few"),
                 Cand(m(dec(x * f * 10)), "pv_moves_too_many")]
    else:
        expr, ans = f"{dec(x)} \\div {f}", x / f
        cands = [Cand(m(dec(x * f)), "pv_wrong_direction"), Cand(m(dec(x / f * 10)), "pv_moves_too_few"),
                 Cand(m(dec(x / f / 10)), "pv_moves_too_many")]
    q = intro(r, f"Calculate: {m(expr)}", f"What is {m(expr)} ?", f"{r.choice(NAMES)} works out {m(expr)}. What should the answer be?")
    return Question(q, m(dec(ans)), cands)


def g_neg_add(r):
    a, b = r.sample(range(2, 20), 2)
    t = r.randrange(2)
    if t == 0:
        expr, ans = f"-{a}+{b}", b - a
        cands = [Cand(m(a + b), "neg_ignore_sign"), Cand(m(-(a + b)), "neg_add_more_negative"), Cand(m(a - b), "neg_wrong_sign")]
    else:
        expr, ans = f"{a}-{b}" if a < b else f"-{a}-{b}", (a - b) if a < b else -(a + b)
        cands = [Cand(m(b - a), "neg_wrong_sign"), Cand(m(a + b), "neg_ignore_sign")] if a < b else \
                [Cand(m(a + b), "neg_wrong_sign"), Cand(m(b - a), "neg_ignore_sign"), Cand(m(a - b), "neg_wrong_sign")]
    q = intro(r, f"Calculate: {m(expr)}", f"What is {m(expr)} ?", f"\\(\n{expr}=\\square\n\\)\nWhat number goes in the box?")
    return Question(q, m(ans), cands)


def g_neg_sub(r):
    a, b = r.sample(range(2, 15), 2)
    t = r.randrange(2)
    if t == 0:
        expr, ans = f"{a}-(-{b})", a + b
        cands = [Cand(m(a - b), "neg_sub_neg_smaller"), Cand(m(-(a + b)), "neg_wrong_sign"), Cand(m(b - a), "neg_sub_neg_smaller")]
    else:
        expr, ans = f"-{a}-(-{b})", b - a
        cands = [Cand(m(-a - b), "neg_sub_neg_smaller"), Cand(m(a + b), "neg_ignore_sign"), Cand(m(a - b), "neg_wrong_sign")]
    q = intro(r, f"Calculate: {m(expr)}", f"What is the answer to {m(expr)} ?", f"\\(\n{expr}=\\bigstar\n\\)\nWhat should replace the star?")
    return Question(q, m(ans), cands)


def g_neg_diff(r):
    a, b = r.randrange(2, 15), r.randrange(2, 20)
    city = pick(r, ["Oslo", "a mountain village", "the freezer", "Moscow", "the South Pole station"])
    q = intro(r, f"At midnight the temperature in {city} was {celsius(-a)}. At midday it was {celsius(b)}. What is the difference between the two temperatures?",
              f"What is the difference between {m(-a)} and {m(b)} ?")
    cands = [Cand(m(abs(b - a)), "neg_diff_subtracts"), Cand(m(-(a + b)), "neg_wrong_sign"), Cand(m(b), None)]
    return Question(q, m(a + b), cands)


def g_neg_mult(r):
    a, b = r.sample(range(2, 13), 2)
    t = r.randrange(3)
    if t == 0:
        expr, ans = f"(-{a}) \\times(-{b})", a * b
        cands = [Cand(m(-a * b), "neg_two_neg_neg"), Cand(m(-(a + b)), "mult_adds_instead"), Cand(m(a + b), "mult_adds_instead")]
    elif t == 1:
        expr, ans = f"(-{a}) \\times {b}", -a * b
        cands = [Cand(m(a * b), "neg_pos_neg_pos"), Cand(m(b - a), "mult_adds_instead"), Cand(m(-(a + b)), "mult_adds_instead")]
    else:
        expr, ans = f"(-{a * b}) \\div(-{b})", a
        cands = [Cand(m(-a), "neg_div_neg_neg"), Cand(m(a * b * b), None), Cand(m(-(a * b) + b), None)]
    q = intro(r, f"Calculate: {m(expr)}", f"What is {m(expr)} ?", f"Work out {m(expr)}")
    return Question(q, m(ans), cands)


def g_area_rect(r):
    l, w = r.sample(range(2, 15), 2)
    u = pick(r, ["cm", "m", "mm"])
    q = intro(r, f"What is the area of a rectangle with length {unit(l, u)} and width {unit(w, u)} ?",
              f"A rectangle measures {unit(l, u)} by {unit(w, u)}. What is its area?",
              f"{r.choice(NAMES)} draws a rectangle {unit(l, u)} long and {unit(w, u)} wide. Find the area.")
    cands = [Cand(unit(2 * (l + w), u, 2), "area_perim_confuse"), Cand(unit(l + w, u, 2), "area_adds_sides"), Cand(unit(l * w, u), "area_units_length")]
    return Question(q, unit(l * w, u, 2), cands)


TRIPLES = [(3, 4, 5), (6, 8, 10), (5, 12, 13), (8, 15, 17), (9, 12, 15), (12, 16, 20), (7, 24, 25)]


def g_area_tri(r):
    a, b, c = pick(r, TRIPLES)
    base, h = (a, b) if r.random() < 0.5 else (b, a)
    if base * h % 2:
        base, h = base * 2, h * 2
        c *= 2
    u = pick(r, ["cm", "m"])
    q = (f"A right-angled triangle has a base of {unit(base, u)}, a perpendicular height of {unit(h, u)} "
         f"and a sloping side of {unit(c, u)}. " + intro(r, "What is its area?", "Calculate the area of the triangle."))
    cands = [Cand(unit(base * h, u, 2), "tri_area_no_half"), Cand(unit(fr(Fraction(base * c, 2)), u, 2), "area_uses_slant"),
             Cand(unit(base + h + c, u, 2), "area_perim_confuse")]
    return Question(q, unit(base * h // 2, u, 2), cands)


def g_area_para(r):
    b, h = r.randrange(4, 15), r.randrange(3, 10)
    s = h + r.randrange(1, 4)
    u = pick(r, ["cm", "m"])
    q = (f"A parallelogram has a base of {unit(b, u)}, a slanted side of {unit(s, u)} and a perpendicular height of {unit(h, u)}. "
         + intro(r, "What is its area?", "Work out the area of the parallelogram."))
    cands = [Cand(unit(b * s, u, 2), "area_uses_slant"), Cand(unit(fr(Fraction(b * h, 2)), u, 2), "para_halves"),
             Cand(unit(2 * (b + s), u, 2), "area_perim_confuse")]
    return Question(q, unit(b * h, u, 2), cands)


def g_area_trap(r):
    a, b = r.sample(range(3, 14), 2)
    h = r.randrange(2, 10)
    if (a + b) * h % 2:
        h += 1
    u = pick(r, ["cm", "m"])
    q = (f"A trapezium has parallel sides of {unit(a, u)} and {unit(b, u)}. The perpendicular distance between them is {unit(h, u)}. "
         + intro(r, "What is its area?", "Calculate the area."))
    cands = [Cand(unit((a + b) * h, u, 2), "trap_no_half"), Cand(unit(fr(Fraction(a * b * h, 2)), u, 2), "trap_mult_sides"),
             Cand(unit(max(a, b) * h, u, 2), "trap_one_side")]
    return Question(q, unit((a + b) * h // 2, u, 2), cands)


def g_perim_rect(r):
    l, w = r.sample(range(2, 20), 2)
    u = pick(r, ["cm", "m"])
    q = intro(r, f"What is the perimeter of a rectangle with length {unit(l, u)} and width {unit(w, u)} ?",
              f"A rectangular garden is {unit(l, u)} long and {unit(w, u)} wide. What is its perimeter?")
    cands = [Cand(unit(l * w, u), "area_perim_confuse"), Cand(unit(l + w, u), "perim_two_sides"), Cand(unit(2 * l + w, u), "perim_misses_side")]
    return Question(q, unit(2 * (l + w), u), cands)


def g_perim_square(r):
    s = r.randrange(3, 16)
    p = 4 * s
    u = pick(r, ["cm", "m"])
    q = intro(r, f"A square has a perimeter of {unit(p, u)}. How long is each side?", f"The perimeter of a square is {unit(p, u)}. What is the length of one side?")
    cands = [Cand(unit(p // 2, u), "perim_square_two"), Cand(unit(f"\\sqrt{{{p}}}", u), "perim_square_sqrt"), Cand(unit(p - 4, u), None)]
    return Question(q, unit(s, u), cands)


def g_circ(r):
    rad = r.randrange(2, 13)
    if r.random() < 0.5:
        q = intro(r, f"A circle has a radius of {unit(rad, 'cm')}. What is its circumference? Give your answer in terms of {PI}.",
                  f"Find the circumference of a circle of radius {unit(rad, 'cm')}, leaving your answer in terms of {PI}.")
        cands = [Cand(m(f"{rad} \\pi \\mathrm{{~cm}}"), "circ_radius_not_diam"), Cand(m(f"{rad * rad} \\pi \\mathrm{{~cm}}"), "circ_area_confuse"),
                 Cand(m(f"{4 * rad} \\pi \\mathrm{{~cm}}"), "circ_diam_as_radius")]
        return Question(q, m(f"{2 * rad} \\pi \\mathrm{{~cm}}"), cands)
    d = 2 * rad
    q = intro(r, f"A circle has a diameter of {unit(d, 'cm')}. What is its circumference? Give your answer in terms of {PI}.",
              f"What is the circumference of a circle with diameter {unit(d, 'cm')} ? Leave your answer in terms of {PI}.")
    cands = [Cand(m(f"{2 * d} \\pi \\mathrm{{~cm}}"), "circ_diam_as_radius"), Cand(m(f"{rad * rad} \\pi \\mathrm{{~cm}}"), "circ_area_confuse"),
             Cand(m(f"{rad} \\pi \\mathrm{{~cm}}"), "circ_radius_not_diam")]
    return Question(q, m(f"{d} \\pi \\mathrm{{~cm}}"), cands)


def g_circ_area(r):
    rad = r.randrange(2, 12)
    q = intro(r, f"What is the area of a circle with radius {unit(rad, 'cm')} ? Give your answer in terms of {PI}.",
              f"A circle has radius {unit(rad, 'cm')}. Find its area in terms of {PI}.")
    cands = [Cand(m(f"{2 * rad} \\pi \\mathrm{{~cm}}^{{2}}"), "circ_area_confuse"), Cand(m(f"{4 * rad * rad} \\pi \\mathrm{{~cm}}^{{2}}"), "circ_diam_as_radius"),
             Cand(m(f"{rad * rad} \\pi^{{2}} \\mathrm{{~cm}}^{{2}}"), "circ_squares_pi")]
    return Question(q, m(f"{rad * rad} \\pi \\mathrm{{~cm}}^{{2}}"), cands)


def g_volume(r):
    l, w, h = r.sample(range(2, 11), 3)
    u = pick(r, ["cm", "m"])
    q = intro(r, f"A cuboid measures {unit(l, u)} by {unit(w, u)} by {unit(h, u)}. What is its volume?",
              f"Find the volume of a box that is {unit(l, u)} long, {unit(w, u)} wide and {unit(h, u)} high.")
    cands = [Cand(unit(l + w + h, u, 3), "vol_adds"), Cand(unit(2 * (l * w + l * h + w * h), u, 3), "vol_sa_confuse"),
             Cand(unit(l * w, u, 3), "vol_two_dims"), Cand(unit(l * w * h, u, 2), "vol_units_sq")]
    return Question(q, unit(l * w * h, u, 3), cands)


def g_surface(r):
    l, w, h = r.sample(range(2, 11), 3)
    u = pick(r, ["cm", "m"])
    q = intro(r, f"What is the surface area of a cuboid measuring {unit(l, u)} by {unit(w, u)} by {unit(h, u)} ?",
              f"A closed box is {unit(l, u)} by {unit(w, u)} by {unit(h, u)}. Find its total surface area.")
    cands = [Cand(unit(l * w * h, u, 2), "vol_sa_confuse"), Cand(unit(l * w + l * h + w * h, u, 2), "sa_no_double"), Cand(unit(6 * l * w, u, 2), None)]
    return Question(q, unit(2 * (l * w + l * h + w * h), u, 2), cands)


def g_ang_line(r):
    if r.random() < 0.5:
        a = r.randrange(20, 160)
        q = intro(r, f"Two angles lie on a straight line. One of them is {deg(a)}. What is the size of the other angle?",
                  f"Angles {m('x')} and {deg(a)} are on a straight line. What is {m('x')} ?")
        cands = [Cand(deg(360 - a), "ang_line_360"), Cand(deg(a), "ang_assume_equal")]
        if a < 90:
            cands.append(Cand(deg(90 - a), "ang_line_90"))
        return Question(q, deg(180 - a), cands)
    a, b = r.randrange(20, 80), r.randrange(20, 80)
    q = f"Three angles lie on a straight line. Two of them are {deg(a)} and {deg(b)}. What is the third angle?"
    cands = [Cand(deg(360 - a - b), "ang_line_360"), Cand(deg(a + b), "ang_adds_given"), Cand(deg(180 - a), None)]
    return Question(q, deg(180 - a - b), cands)


def g_ang_tri(r):
    a, b = r.randrange(25, 90), r.randrange(25, 80)
    q = intro(r, f"Two angles in a triangle are {deg(a)} and {deg(b)}. What is the size of the third angle?",
              f"A triangle has angles of {deg(a)}, {deg(b)} and {m('y')}. Find {m('y')}.")
    cands = [Cand(deg(360 - a - b), "ang_tri_360"), Cand(deg(180 - a), "ang_tri_one"), Cand(deg(a + b), "ang_adds_given")]
    return Question(q, deg(180 - a - b), cands)


def g_ang_point(r):
    a, b, c = r.randrange(30, 70), r.randrange(30, 70), r.randrange(20, 60)
    q = intro(r, f"Four angles meet at a point. Three of them are {deg(a)}, {deg(b)} and {deg(c)}. What is the fourth angle?",
              f"Angles of {deg(a)}, {deg(b)}, {deg(c)} and {m('p')} are around a point. What is {m('p')} ?")
    cands = [Cand(deg(180 - a - b - c), "ang_point_180"), Cand(deg(a + b + c), "ang_adds_given"), Cand(deg(360 - a - b), None)]
    return Question(q, deg(360 - a - b - c), cands)


def g_ang_vo(r):
    a = r.randrange(20, 85)
    q = intro(r, f"Two straight lines cross. One of the angles formed is {deg(a)}. What is the angle vertically opposite it?",
              f"Angle {m('q')} is vertically opposite an angle of {deg(a)}. What is {m('q')} ?")
    cands = [Cand(deg(180 - a), "ang_vo_supp"), Cand(deg(90 - a), "ang_vo_comp"), Cand(deg(360 - a), None)]
    return Question(q, deg(a), cands)


POLYS = {5: "pentagon", 6: "hexagon", 7: "heptagon", 8: "octagon", 9: "nonagon", 10: "decagon"}


def g_poly(r):
    n = r.randrange(5, 11)
    q = intro(r, f"What is the sum of the interior angles of a {POLYS[n]}?", f"A {POLYS[n]} has {m(n)} sides. What do its interior angles add up to?")
    cands = [Cand(deg(n * 180), "poly_n180"), Cand(deg((n - 1) * 180), "poly_n_minus_1"), Cand(deg(360), "poly_always_360")]
    return Question(q, deg((n - 2) * 180), cands)


def g_parallel(r):
    a = r.randrange(35, 85) if r.random() < 0.5 else r.randrange(95, 150)
    t = r.randrange(3)
    if t == 0:
        kind, ans = "co-interior", 180 - a
        cands = [Cand(deg(a), "par_co_equal"), Cand(deg(360 - a), "par_co_360")]
        if a < 90:
            cands.append(Cand(deg(90 - a), "ang_comp_supp"))
    elif t == 1:
        kind, ans = "alternate", a
        cands = [Cand(deg(180 - a), "par_alt_co"), Cand(deg(360 - a), None)]
    else:
        kind, ans = "corresponding", a
        cands = [Cand(deg(180 - a), "par_corr_supp"), Cand(deg(360 - a), None)]
    if t and a < 90:
        cands.append(Cand(deg(90 - a), "ang_comp_supp"))
    q = intro(r, f"Angles {m('p')} and {m('q')} are {kind} angles formed where a line crosses two parallel lines. {m('p')} is {deg(a)}. What is {m('q')} ?",
              f"A transversal crosses a pair of parallel lines. Angle {m('q')} and an angle of {deg(a)} are {kind} angles. Find {m('q')}.")
    return Question(q, deg(ans), cands)


def g_pct_amount(r):
    p = pick(r, [20, 30, 40, 60, 70, 80])
    n = 10 * r.randrange(3, 40)
    q = intro(r, f"What is {pct(p)} of {m(n)} ?", f"Calculate {pct(p)} of {money(n)}", f"{r.choice(NAMES)} needs to find {pct(p)} of {m(n)}. What is the answer?")
    cands = [Cand(m(n - p), "pct_subtracts"), Cand(m(n // 10), "pct_only_10"), Cand(m(p * n // 10), "pct_div_10"),
             Cand(m(n - p * n // 100), "pct_finds_remaining")]
    return Question(q, m(p * n // 100), cands)


def g_pct_mental(r):
    p = pick(r, [25, 5, 50, 75])
    n = 20 * r.randrange(2, 30)
    if p == 25:
        cands = [Cand(m(n // 2), "pct_25_half"), Cand(m(n - 25), "pct_subtracts")]
        if n % 25 == 0:
            cands.append(Cand(m(n // 25), "pct_divides_by_pct"))
    elif p == 5:
        cands = [Cand(m(n // 10), "pct_only_10"), Cand(m(n - 5), "pct_subtracts"), Cand(m(n // 5), "pct_divides_by_pct")]
    elif p == 50:
        cands = [Cand(m(n - 50), "pct_subtracts"), Cand(m(dec(Decimal(n) / 50)), "pct_divides_by_pct"), Cand(m(n // 5), None)]
    else:
        cands = [Cand(m(n // 4), "pct_finds_remaining"), Cand(m(n - 75), "pct_subtracts"), Cand(m(dec(Decimal(n) * 75 / 10)), "pct_div_10")]
    q = intro(r, f"Work out {pct(p)} of {m(n)} without a calculator.", f"What is {pct(p)} of {m(n)} ?")
    return Question(q, m(dec(Decimal(n) * p / 100)), cands)


def g_pct_change(r):
    p = pick(r, [10, 20, 25, 30, 40, 50, 15, 5])
    n = 20 * r.randrange(2, 25)
    inc = r.random() < 0.55
    part = Decimal(n) * p / 100
    if inc:
        q = intro(r, f"Increase {m(n)} by {pct(p)}.", f"A price of {money(n)} goes up by {pct(p)}. What is the new price?")
        ans = Decimal(n) + part
        cands = [Cand(m(dec(part)), "pct_forgets_add"), Cand(m(n + p), "pct_adds_number"), Cand(m(dec(Decimal(n) - part)), "pct_inc_dec_confuse")]
    else:
        q = intro(r, f"Decrease {m(n)} by {pct(p)}.", f"A coat costing {money(n)} is reduced by {pct(p)} in a sale. What is the sale price?")
        ans = Decimal(n) - part
        cands = [Cand(m(dec(part)), "pct_forgets_sub"), Cand(m(n - p), "pct_adds_number"), Cand(m(dec(Decimal(n) + part)), "pct_inc_dec_confuse")]
    return Question(q, m(dec(ans)), cands)


def g_frac_pct(r):
    b = pick(r, [2, 4, 5, 10, 20, 25, 50])
    a = r.randrange(1, b)
    ans = Decimal(a) * 100 / b
    q = intro(r, f"Write {m(frac(a, b))} as a percentage.", f"Convert {m(frac(a, b))} into a percentage.", f"What percentage is equal to {m(frac(a, b))} ?")
    cands = [Cand(m(f"{a}{b} \\%"), "fpct_concat"), Cand(m(f"{a} \\%"), "fpct_num_only"), Cand(m(f"{dec(Decimal(a) / b)} \\%"), "fpct_decimal_percent")]
    return Question(q, m(f"{dec(ans)} \\%"), cands)


def g_dec_pct(r):
    x = Decimal(r.randrange(1, 99)) / 100
    q = intro(r, f"Write {m(dec(x))} as a percentage.", f"Convert {m(dec(x))} to a percentage.", f"{r.choice(NAMES)} wants to write {m(dec(x))} as a percentage. What should they write?")
    cands = [Cand(m(f"{dec(x)} \\%"), "fpct_decimal_percent"), Cand(m(f"{dec(x * 10)} \\%"), "dec_pct_x10"), Cand(m(f"{dec(x * 1000)} \\%"), "dec_pct_x1000")]
    return Question(q, m(f"{dec(x * 100)} \\%"), cands)


def _round(x: Decimal, q: Decimal) -> Decimal:
    from decimal import ROUND_HALF_UP
    return (x / q).quantize(Decimal(1), rounding=ROUND_HALF_UP) * q


def g_round_int(r):
    place = pick(r, [10, 100, 1000])
    n = r.randrange(place * 3, place * 100)
    while n % place == 0 or (n // (place // 10 if place > 10 else 1)) % 10 == 5:
        n += 1
    ans = int(_round(Decimal(n), Decimal(place)))
    name = {10: "ten", 100: "hundred", 1000: "thousand"}[place]
    q = intro(r, f"Round {m(n)} to the nearest {name}.", f"What is {m(n)} rounded to the nearest {m(place)} ?")
    down, up = n // place * place, (n // place + 1) * place
    cands = [Cand(m(down), "round_truncate") if ans == up else Cand(m(up), "round_always_up"),
             Cand(m(int(_round(Decimal(n), Decimal(place * 10)))) if place < 1000 else m(int(_round(Decimal(n), Decimal(100)))), "round_wrong_place"),
             Cand(m(ans // place), "round_drops_zeros")]
    return Question(q, m(ans), cands)


def g_round_dp(r):
    x = Decimal(r.randrange(10000, 999999)) / 10000
    dp = r.randrange(1, 3)
    qd = Decimal(1).scaleb(-dp)
    ans = _round(x, qd).quantize(qd)
    trunc = (x // qd * qd).quantize(qd)
    other = _round(x, Decimal(1).scaleb(-(3 - dp))).quantize(Decimal(1).scaleb(-(3 - dp)))
    sig = x.adjusted() + 1  # digits before the point
    sf = _round(x, Decimal(10) ** (sig - dp))
    q = intro(r, f"Round {m(x)} to {m(dp)} decimal place{'s' if dp > 1 else ''}.", f"What is {m(x)} correct to {m(dp)} decimal place{'s' if dp > 1 else ''}?")
    cands = [Cand(m(trunc), "round_truncate") if trunc != ans else Cand(m((trunc + qd).quantize(qd)), "round_always_up"),
             Cand(m(other), "round_wrong_place"), Cand(m(dec(sf)), "round_sf_dp_confuse")]
    return Question(q, m(ans), cands)


def g_round_sf(r):
    if r.random() < 0.5:
        x = Decimal(r.randrange(1001, 9999)) / Decimal(10) ** r.randrange(5, 7)
        sf = 2
        qd = Decimal(10) ** (x.adjusted() - sf + 1)
        ans = _round(x, qd)
        cands = [Cand(m(dec(_round(x, Decimal(10) ** -sf).quantize(Decimal(10) ** -sf))), "round_leading_zeros"),
                 Cand(m(dec(_round(x, Decimal(10) ** -(sf + 1)).quantize(Decimal(10) ** -(sf + 1)))), "round_sf_dp_confuse"),
                 Cand(m(dec((x // qd) * qd)), "round_truncate")]
    else:
        x = Decimal(r.randrange(10000, 99999))
        sf = r.randrange(1, 3)
        qd = Decimal(10) ** (x.adjusted() - sf + 1)
        ans = _round(x, qd)
        cands = [Cand(m(int(ans / qd)), "round_drops_zeros"), Cand(m(int(x // qd * qd)), "round_truncate"),
                 Cand(m(f"{int(x)}.{'0' * sf}"), "round_sf_dp_confuse")]
    q = intro(r, f"Round {m(dec(x))} to {m(sf)} significant figure{'s' if sf > 1 else ''}.", f"Write {m(dec(x))} correct to {m(sf)} significant figure{'s' if sf > 1 else ''}.")
    return Question(q, m(dec(ans)), cands)


def g_estimate(r):
    a = Decimal(r.randrange(150, 949)) / 10
    b = Decimal(r.randrange(21, 89)) / 10
    ra, rb = _round(a, Decimal(10)), _round(b, Decimal(1))
    q = intro(r, f"Estimate the value of {times(dec(a), dec(b))} by rounding each number to one significant figure.",
              f"{r.choice(NAMES)} estimates {times(dec(a), dec(b))} by rounding to 1 significant figure. What is the estimate?")
    cands = [Cand(m(dec(_round(a, Decimal(1)) * rb)), "est_rounds_integer"), Cand(m(dec((a // 10 * 10) * (b // 1))), "round_truncate"),
             Cand(m(dec(a * b)), "est_exact")]
    return Question(q, m(dec(ra * rb)), cands)


def g_pow_eval(r):
    n = r.randrange(2, 4)
    a = r.randrange(2, 9 if n == 2 else 6)
    word = "squared" if n == 2 else "cubed"
    q = intro(r, f"Calculate: {m(f'{a}^{{{n}}}')}", f"What is {m(a)} {word}?", f"Work out the value of {m(f'{a}^{{{n}}}')}")
    cands = [Cand(m(a * n), "pow_mult_by_power"), Cand(m(a + n), "pow_adds"), Cand(m(n ** a), "pow_swaps")]
    return Question(q, m(a ** n), cands)


def g_pow_mult(r):
    a = r.randrange(2, 10)
    p, s = r.sample(range(2, 9), 2)
    if r.random() < 0.5:
        expr = f"{a}^{{{p}}} \\times {a}^{{{s}}}"
        cands = [Cand(m(f"{a}^{{{p * s}}}"), "pow_mult_powers"), Cand(m(f"{a * a}^{{{p + s}}}"), "pow_mult_bases"), Cand(m(f"{a * a}^{{{p * s}}}"), "pow_mult_both")]
        ans = f"{a}^{{{p + s}}}"
    else:
        v = pick(r, ["x", "y", "a", "m"])
        expr = f"{v}^{{{p}}} \\times {v}^{{{s}}}"
        cands = [Cand(m(f"{v}^{{{p * s}}}"), "pow_mult_powers"), Cand(m(f"2 {v}^{{{p + s}}}"), None), Cand(m(f"{v}^{{{p - s if p > s else s - p}}}"), None)]
        ans = f"{v}^{{{p + s}}}"
    q = intro(r, f"Simplify: {m(expr)}", f"Write {m(expr)} as a single power.", f"Which of these is equal to {m(expr)} ?")
    return Question(q, m(ans), cands)


def g_pow_div(r):
    a = r.randrange(2, 10)
    s = r.randrange(2, 5)
    p = s * r.randrange(2, 4)
    expr = f"{a}^{{{p}}} \\div {a}^{{{s}}}"
    q = intro(r, f"Simplify: {m(expr)}", f"Write {m(expr)} as a single power of {m(a)}.")
    cands = [Cand(m(f"{a}^{{{p // s}}}"), "pow_div_powers"), Cand(m(f"1^{{{p - s}}}"), "pow_div_bases"), Cand(m(f"{a}^{{{p + s}}}"), "pow_add_when_div")]
    return Question(q, m(f"{a}^{{{p - s}}}"), cands)


def g_pow_pow(r):
    a = pick(r, ["x", "y", "2", "3", "5", "t"])
    p, s = r.sample(range(2, 7), 2)
    expr = f"({a}^{{{p}}})^{{{s}}}"
    q = intro(r, f"Simplify: {m(expr)}", f"Which of these is equivalent to {m(expr)} ?")
    cands = [Cand(m(f"{a}^{{{p + s}}}"), "pow_add_power_of_power"), Cand(m(f"{s} {a}^{{{p}}}" if not a.isdigit() else f"{s} \\times {a}^{{{p}}}"), "pow_mult_by_power"),
             Cand(m(f"{a}^{{{p ** s}}}" if p ** s < 1000 else f"{a}^{{{p}{s}}}"), None)]
    return Question(q, m(f"{a}^{{{p * s}}}"), cands)


def g_pow_zero_neg(r):
    a = r.randrange(2, 10)
    if r.random() < 0.5:
        q = intro(r, f"What is the value of {m(f'{a}^{{0}}')} ?", f"Calculate: {m(f'{a}^{{0}}')}")
        cands = [Cand(m(0), "pow_zero_zero"), Cand(m(a), "pow_zero_itself"), Cand(m(fr(Fraction(1, a))), None)]
        return Question(q, m(1), cands)
    n = r.randrange(2, 4)
    q = intro(r, f"What is the value of {m(f'{a}^{{-{n}}}')} ?", f"Write {m(f'{a}^{{-{n}}}')} as a fraction.")
    cands = [Cand(m(-(a ** n)), "pow_neg_negative"), Cand(m(-a * n), "pow_mult_by_power"), Cand(m(frac(1, a * n)), "pow_mult_by_power")]
    return Question(q, m(frac(1, a ** n)), cands)


def _lin(coef: int, v: str, const: int) -> str:
    c = "" if coef == 1 else ("-" if coef == -1 else str(coef))
    s = f"{c}{v}"
    if const > 0:
        s += f"+{const}"
    elif const < 0:
        s += f"-{-const}"
    return s


def g_expand_single(r):
    a, b, c = r.randrange(2, 9), r.randrange(1, 6), r.randrange(1, 10)
    v = pick(r, ["x", "y", "p", "n"])
    if r.random() < 0.6:
        expr = f"{a}({_lin(b, v, c)})"
        ans = _lin(a * b, v, a * c)
        cands = [Cand(m(_lin(a * b, v, c)), "exp_first_term"), Cand(m(_lin(a + b, v, a + c)), "exp_adds_outside"), Cand(m(_lin(b, v, a * c)), "exp_first_term")]
    else:
        expr = f"-{a}({_lin(b, v, -c)})"
        ans = _lin(-a * b, v, a * c)
        cands = [Cand(m(_lin(-a * b, v, -a * c)), "exp_neg_sign"), Cand(m(_lin(-a * b, v, -c)), "exp_first_term"), Cand(m(_lin(a * b, v, -a * c)), "exp_neg_sign")]
    q = intro(r, f"Expand: {m(expr)}", f"Multiply out the bracket: {m(expr)}", f"{r.choice(NAMES)} expands {m(expr)}. What is the correct expansion?")
    return Question(q, m(ans), cands)


def g_expand_var(r):
    a = r.randrange(2, 10)
    v = pick(r, ["x", "y", "m", "t"])
    expr = f"{v}({v}+{a})"
    q = intro(r, f"Expand: {m(expr)}", f"Multiply out: {m(expr)}")
    cands = [Cand(m(f"2 {v}+{a} {v}"), "exp_x_times_x"), Cand(m(f"{v}^{{2}}+{a}"), "exp_first_term"), Cand(m(f"{v}^{{2}}+{a + 1} {v}"), None)]
    return Question(q, m(f"{v}^{{2}}+{a} {v}"), cands)


def _quad(b: int, c: int, v="x") -> str:
    s = f"{v}^{{2}}"
    if b:
        s += ("+" if b > 0 else "-") + (f"{abs(b)} " if abs(b) != 1 else "") + v
    if c:
        s += ("+" if c > 0 else "-") + str(abs(c))
    return s


def g_expand_double(r):
    a = r.randrange(1, 10)
    b = r.randrange(1, 10) * (1 if r.random() < 0.6 else -1)
    while b == a or b == -a:
        b = r.randrange(2, 10)
    v = pick(r, ["x", "y", "p"])
    expr = f"({_lin(1, v, a)})({_lin(1, v, b)})"
    q = intro(r, f"Expand and simplify: {m(expr)}", f"Multiply out the brackets: {m(expr)}", f"{r.choice(NAMES)} expands {m(expr)}. What should they get?")
    cands = [Cand(m(_quad(0, a * b, v)), "exp_double_fl"), Cand(m(_quad(a + b, a + b, v)), "exp_double_adds_consts"),
             Cand(m(_quad(a * b, a * b, v)), "exp_double_mult_middle"), Cand(m(f"2 {v}" + ("+" if a + b >= 0 else "") + f"{a * b}"), "exp_x_times_x")]
    return Question(q, m(_quad(a + b, a * b, v)), cands)


def g_expand_square(r):
    a = r.randrange(2, 10) * (1 if r.random() < 0.7 else -1)
    v = pick(r, ["x", "y", "a"])
    expr = f"({_lin(1, v, a)})^{{2}}"
    q = intro(r, f"Expand: {m(expr)}", f"Which of these is equivalent to {m(expr)} ?")
    cands = [Cand(m(_quad(0, a * a, v)), "exp_sq_two_terms"), Cand(m(_quad(a, a * a, v)), "exp_sq_single_middle"),
             Cand(m(f"2 {v}" + ("+" if a > 0 else "-") + f"{2 * abs(a)}"), "pow_times_two")]
    return Question(q, m(_quad(2 * a, a * a, v)), cands)


def g_collect(r):
    a, b, c = r.randrange(2, 9), r.randrange(2, 9), r.randrange(2, 9)
    u, w = pick(r, [("a", "b"), ("x", "y"), ("m", "n"), ("p", "q")])
    if r.random() < 0.5:
        expr = f"{a} {u}+{b} {w}+{c} {u}"
        ans = f"{a + c} {u}+{b} {w}"
        cands = [Cand(m(f"{a + b + c} {u} {w}"), "alg_combine_unlike"), Cand(m(f"{a + c} {u}"), "alg_drops_term"), Cand(m(f"{a + b + c} {u}"), "alg_combine_unlike")]
    else:
        d = r.randrange(1, b)
        expr = f"{a} {u}-{b} {w}+{c} {u}+{d} {w}"
        ans = f"{a + c} {u}-{b - d} {w}"
        cands = [Cand(m(f"{a + c} {u}-{b + d} {w}"), "alg_sign_belongs"), Cand(m(f"{a + c - b + d} {u} {w}"), "alg_combine_unlike"),
                 Cand(m(f"{a - c} {u}-{b - d} {w}" if a > c else f"{c - a} {u}-{b - d} {w}"), "alg_sign_belongs")]
    q = intro(r, f"Simplify: {m(expr)}", f"Collect like terms: {m(expr)}", f"Which of these is the simplest form of {m(expr)} ?")
    return Question(q, m(ans), cands)


def g_alg_mult(r):
    a, b = r.randrange(2, 10), r.randrange(2, 10)
    u = pick(r, ["a", "x", "y", "p"])
    if r.random() < 0.5:
        w = pick(r, [c for c in "bmnq" if c != u])
        expr, ans = f"{a} {u} \\times {b} {w}", f"{a * b} {u} {w}"
        cands = [Cand(m(f"{a + b} {u} {w}"), "alg_adds_coefs_mult"), Cand(m(f"{a}{b} {u} {w}"), "alg_concat"), Cand(m(f"{a * b}+{u} {w}"), None)]
    else:
        expr, ans = f"{a} {u} \\times {b} {u}", f"{a * b} {u}^{{2}}"
        cands = [Cand(m(f"{a * b} {u}"), "alg_a_times_a_is_a"), Cand(m(f"{a + b} {u}^{{2}}"), "alg_adds_coefs_mult"), Cand(m(f"{2 * a * b} {u}"), "exp_x_times_x")]
    q = intro(r, f"Simplify: {m(expr)}", f"Write {m(expr)} as simply as possible.")
    return Question(q, m(ans), cands)


def g_subst_lin(r):
    a, x, c = r.randrange(2, 10), r.randrange(2, 10), r.randrange(1, 20)
    v = pick(r, ["x", "n", "t", "k"])
    q = intro(r, f"What is the value of {m(f'{a} {v}+{c}')} when {m(f'{v}={x}')} ?", f"Work out {m(f'{a} {v}+{c}')} if {m(f'{v}={x}')}.",
              f"Substitute {m(f'{v}={x}')} into {m(f'{a} {v}+{c}')}.")
    cands = [Cand(m(int(f"{a}{x}") + c), "sub_concat"), Cand(m(a + x + c), "sub_adds"), Cand(m(a * (x + c)), "bidmas_ltr")]
    return Question(q, m(a * x + c), cands)


def g_subst_pow(r):
    a, x = r.randrange(2, 6), r.randrange(2, 7)
    v = pick(r, ["x", "y", "n"])
    if r.random() < 0.5:
        q = intro(r, f"What is the value of {m(f'{a} {v}^{{2}}')} when {m(f'{v}={x}')} ?", f"Evaluate {m(f'{a} {v}^{{2}}')} for {m(f'{v}={x}')}.")
        cands = [Cand(m((a * x) ** 2), "pow_coefficient"), Cand(m(a * x * 2), "pow_times_two"), Cand(m(int(f"{a}{x}") ** 2), "sub_concat")]
        return Question(q, m(a * x * x), cands)
    q = intro(r, f"What is the value of {m(f'{v}^{{2}}')} when {m(f'{v}=-{x}')} ?", f"If {m(f'{v}=-{x}')}, what is {m(f'{v}^{{2}}')} ?")
    cands = [Cand(m(-x * x), "sub_neg_square"), Cand(m(-2 * x), "pow_times_two"), Cand(m(2 * x), "pow_times_two")]
    return Question(q, m(x * x), cands)


def g_eq_two_step(r):
    a, x, b = r.randrange(2, 10), r.randrange(1, 12), r.randrange(1, 20)
    c = a * x + b
    v = pick(r, ["x", "y", "p", "n"])
    eq = f"{a} {v}+{b}={c}"
    q = intro(r, f"Solve: {m(eq)}", f"What is the value of {m(v)} if {m(eq)} ?", f"{r.choice(NAMES)} is solving {m(eq)}. What is {m(v)} ?")
    cands = [Cand(m(f"{v}={fr(Fraction(c + b, a))}"), "eq_wrong_inverse"), Cand(m(f"{v}={fr(Fraction(c, a) - b)}"), "eq_div_first"),
             Cand(m(f"{v}={(c - b) * a}"), "eq_mult_inverse"), Cand(m(f"{v}={c - b - a}"), "eq_sub_coef")]
    return Question(q, m(f"{v}={x}"), cands)


def g_eq_div(r):
    a, b = r.randrange(2, 10), r.randrange(2, 12)
    v = pick(r, ["x", "y", "m"])
    eq = f"\\frac{{{v}}}{{{a}}}={b}"
    q = intro(r, f"Solve: {m(eq)}", f"Find {m(v)} when {m(eq)}")
    cands = [Cand(m(f"{v}={fr(Fraction(b, a))}"), "eq_div_inverse"), Cand(m(f"{v}={a + b}"), "eq_add_inverse"), Cand(m(f"{v}={b - a}" if b > a else f"{v}={a - b}"), None)]
    return Question(q, m(f"{v}={a * b}"), cands)


def g_eq_both(r):
    c, x = r.randrange(1, 6), r.randrange(1, 9)
    a = c + r.randrange(1, 5)
    b = r.randrange(1, 15)
    d = (a - c) * x + b
    eq = f"{_lin(a, 'x', b)}={_lin(c, 'x', d)}"
    q = intro(r, f"Solve: {m(eq)}", f"What value of {m('x')} makes {m(eq)} true?")
    cands = [Cand(m(f"x={fr(Fraction(d - b, a + c))}"), "eq_both_sides_add"), Cand(m(f"x={fr(Fraction(d + b, a - c))}"), "eq_wrong_inverse"),
             Cand(m(f"x={fr(Fraction(d - b, a))}"), "eq_ignores_one_x")]
    return Question(q, m(f"x={x}"), cands)


def g_ratio_share(r):
    a, b = r.sample(range(1, 8), 2)
    k = r.randrange(2, 12)
    n = (a + b) * k * (a * b // math.gcd(a, b))
    who = r.sample(NAMES, 2)
    first = r.random() < 0.5
    part = a if first else b
    q = intro(r, f"{who[0]} and {who[1]} share {money(n)} in the ratio {m(f'{a}: {b}')}. How much does {who[0 if first else 1]} get?",
              f"Divide {m(n)} in the ratio {m(f'{a}: {b}')}. What is the {'first' if first else 'second'} share?")
    other = b if first else a
    cands = [Cand(m(fr(Fraction(n, part))), "ratio_div_by_part") if part != 1 else Cand(m(n - part), None),
             Cand(m(n // (a + b)), "ratio_one_part") if part != 1 else Cand(m(n // (a + b) * other), None),
             Cand(m(fr(Fraction(n * part, other))), "ratio_as_fraction")]
    return Question(q, m(n * part // (a + b)), cands)


def g_ratio_simplify(r):
    a, b = r.sample(range(1, 10), 2)
    while math.gcd(a, b) != 1:
        a, b = r.sample(range(1, 10), 2)
    k = pick(r, [4, 6, 8, 9, 12])
    part = pick(r, [f for f in range(2, k) if k % f == 0])
    q = intro(r, f"Write the ratio {m(f'{k * a}: {k * b}')} in its simplest form.", f"Simplify fully: {m(f'{k * a}: {k * b}')}")
    cands = [Cand(m(f"{k * a // part}: {k * b // part}"), "ratio_not_fully"), Cand(m(f"{b}: {a}"), "ratio_order"), Cand(m(f"{a}: {k * b}"), "ratio_one_side")]
    return Question(q, m(f"{a}: {b}"), cands)


def g_ratio_find(r):
    a, b = r.sample(range(2, 8), 2)
    k = r.randrange(2, 9)
    x = a * k
    things = pick(r, [("boys", "girls"), ("red beads", "blue beads"), ("cats", "dogs"), ("adults", "children")])
    q = intro(r, f"The ratio of {things[0]} to {things[1]} is {m(f'{a}: {b}')}. There are {m(x)} {things[0]}. How many {things[1]} are there?",
              f"In a group, {things[0]} and {things[1]} are in the ratio {m(f'{a}: {b}')}. If there are {m(x)} {things[0]}, how many {things[1]} are there?")
    cands = [Cand(m(x + b - a), "ratio_additive"), Cand(m(x * b), "ratio_div_by_part"), Cand(m(x + b * k), "ratio_total_confuse")]
    return Question(q, m(b * k), cands)


def _data_list(r, n, lo=1, hi=20):
    return [r.randrange(lo, hi) for _ in range(n)]


def g_mean(r):
    while True:
        n = r.randrange(4, 7)
        xs = _data_list(r, n)
        s = sum(xs)
        if s % n == 0:
            mean = s // n
            med = sorted(xs)[n // 2] if n % 2 else Fraction(sorted(xs)[n // 2 - 1] + sorted(xs)[n // 2], 2)
            if med != mean:
                break
    q = intro(r, f"Find the mean of these numbers:\n{m(', '.join(map(str, xs)))}", f"What is the mean of {m(', '.join(map(str, xs)))} ?")
    cands = [Cand(m(s), "mean_no_divide"), Cand(m(fr(Fraction(med))), "mean_median_confuse"), Cand(m(fr(Fraction(s, n - 1))), "mean_wrong_count")]
    return Question(q, m(mean), cands)


def g_median(r):
    while True:
        n = r.randrange(5, 9)
        xs = r.sample(range(1, 30), n)
        ys = sorted(xs)
        if n % 2:
            ans = Fraction(ys[n // 2])
        else:
            ans = Fraction(ys[n // 2 - 1] + ys[n // 2], 2)
        unsorted_mid = xs[n // 2]
        if unsorted_mid != ans:
            break
    q = intro(r, f"What is the median of these numbers?\n{m(', '.join(map(str, xs)))}", f"Find the median of {m(', '.join(map(str, xs)))}")
    cands = [Cand(m(unsorted_mid), "median_unordered"), Cand(m(fr(Fraction(sum(xs), n))), "mean_median_confuse")]
    if n % 2 == 0:
        cands.append(Cand(m(ys[n // 2]), "median_even_one"))
    cands.append(Cand(m(fr(Fraction(n + 1, 2))), "median_gives_position"))
    return Question(q, m(fr(ans)), cands)


def g_mode(r):
    while True:
        xs = _data_list(r, r.randrange(6, 9), 1, 12)
        counts = {v: xs.count(v) for v in xs}
        best = max(counts.values())
        modes = [v for v, c in counts.items() if c == best]
        ys = sorted(xs)
        med = ys[len(ys) // 2] if len(ys) % 2 else None
        if len(modes) == 1 and best >= 2 and modes[0] != max(xs) and best != modes[0]:
            break
    mode = modes[0]
    q = intro(r, f"What is the mode of these numbers?\n{m(', '.join(map(str, xs)))}", f"Find the mode of {m(', '.join(map(str, xs)))}")
    cands = [Cand(m(best), "mode_gives_freq"), Cand(m(max(xs)), "mode_largest")]
    if med is not None and med != mode:
        cands.append(Cand(m(med), "mode_median_confuse"))
    return Question(q, m(mode), cands)


def g_range(r):
    while True:
        xs = r.sample(range(2, 40), r.randrange(5, 8))
        if xs[0] != max(xs) and xs[-1] != min(xs) and xs[0] - xs[-1] != max(xs) - min(xs) and xs[-1] - xs[0] != max(xs) - min(xs):
            break
    q = intro(r, f"What is the range of these numbers?\n{m(', '.join(map(str, xs)))}", f"Find the range of {m(', '.join(map(str, xs)))}")
    cands = [Cand(m(max(xs)), "range_largest"), Cand(m(xs[-1] - xs[0]), "range_unordered"), Cand(m(max(xs) + min(xs)), "range_adds")]
    return Question(q, m(max(xs) - min(xs)), cands)


def g_unit_len(r):
    t = r.randrange(3)
    if t == 0:
        x = Decimal(r.randrange(11, 99)) / 10
        q = intro(r, f"Convert {unit(dec(x), 'm')} into centimetres.", f"How many centimetres are there in {unit(dec(x), 'm')} ?")
        ans = x * 100
        cands = [Cand(unit(dec(x * 10), "cm"), "unit_cm_m_10"), Cand(unit(dec(x * 1000), "cm"), "unit_cm_m_1000"), Cand(unit(dec(x / 100), "cm"), "unit_wrong_op")]
        return Question(q, unit(dec(ans), "cm"), cands)
    if t == 1:
        x = r.randrange(120, 990)
        q = intro(r, f"Convert {unit(x, 'cm')} into metres.", f"Write {unit(x, 'cm')} in metres.")
        cands = [Cand(unit(dec(Decimal(x) / 10), "m"), "unit_cm_m_10"), Cand(unit(dec(Decimal(x) / 1000), "m"), "unit_cm_m_1000"), Cand(unit(x * 100, "m"), "unit_wrong_op")]
        return Question(q, unit(dec(Decimal(x) / 100), "m"), cands)
    x = r.randrange(12, 99)
    q = intro(r, f"Convert {unit(x, 'mm')} into centimetres.", f"How many centimetres is {unit(x, 'mm')} ?")
    cands = [Cand(unit(dec(Decimal(x) / 100), "cm"), "unit_mm_cm_100"), Cand(unit(x * 10, "cm"), "unit_wrong_op"), Cand(unit(dec(Decimal(x) / 1000), "cm"), None)]
    return Question(q, unit(dec(Decimal(x) / 10), "cm"), cands)


def g_unit_mass(r):
    x = Decimal(r.randrange(11, 99)) / 10
    u1, u2 = pick(r, [("kg", "g"), ("l", "ml")])
    word = {"g": "grams", "ml": "millilitres"}[u2]
    q = intro(r, f"Convert {unit(dec(x), u1)} into {word}.", f"How many {word} are there in {unit(dec(x), u1)} ?")
    cands = [Cand(unit(dec(x * 100), u2), "unit_kg_100"), Cand(unit(dec(x / 1000), u2), "unit_wrong_op"), Cand(unit(dec(x * 10), u2), None)]
    return Question(q, unit(dec(x * 1000), u2), cands)


def g_unit_area(r):
    x = r.randrange(2, 10)
    if r.random() < 0.5:
        q = intro(r, f"Convert {unit(x, 'm', 2)} into {SQ_CM}.", f"How many square centimetres are there in {unit(x, 'm', 2)} ?")
        cands = [Cand(unit(x * 100, "cm", 2), "unit_area_linear"), Cand(unit(dec(Decimal(x) / 10000), "cm", 2), "unit_wrong_op"), Cand(unit(x * 1000, "cm", 2), None)]
        return Question(q, unit(x * 10000, "cm", 2), cands)
    q = intro(r, f"Convert {unit(x, 'cm', 2)} into {SQ_MM}.", f"How many square millimetres are there in {unit(x, 'cm', 2)} ?")
    cands = [Cand(unit(x * 10, "mm", 2), "unit_area_linear"), Cand(unit(dec(Decimal(x) / 100), "mm", 2), "unit_wrong_op"), Cand(unit(x * 1000, "mm", 2), None)]
    return Question(q, unit(x * 100, "mm", 2), cands)


def g_long_mult(r):
    a, b = r.randrange(12, 99), r.randrange(12, 99)
    while a % 10 == 0 or b % 10 == 0:
        a, b = r.randrange(12, 99), r.randrange(12, 99)
    t1, o1, t2, o2 = a // 10, a % 10, b // 10, b % 10
    q = intro(r, f"Calculate: {times(a, b)}", f"Use long multiplication to work out {times(a, b)}")
    cands = [Cand(m(t1 * t2 * 100 + o1 * o2), "mult_tens_ones_only"), Cand(m(a * o2 + a * t2), "mult_no_placeholder"),
             Cand(m(a * o2), "mult_one_digit")]
    return Question(q, m(a * b), cands)


def g_dec_mult(r):
    a, b = r.randrange(2, 10), r.randrange(2, 10)
    if r.random() < 0.5:
        x, y = Decimal(a) / 10, Decimal(b) / 10
        cands = [Cand(m(dec(Decimal(a * b) / 10)), "dec_mult_dp"), Cand(m(a * b), "dec_mult_ignore"), Cand(m(dec(x + y)), "mult_adds_instead")]
    else:
        x, y = Decimal(a) / 10, Decimal(b)
        cands = [Cand(m(dec(Decimal(a * b) / 100)), "dec_mult_dp"), Cand(m(a * b), "dec_mult_ignore"), Cand(m(dec(x + y)), "mult_adds_instead")]
    q = intro(r, f"Calculate: {times(dec(x), dec(y))}", f"What is {times(dec(x), dec(y))} ?")
    return Question(q, m(dec(x * y)), cands)


def g_lcm(r):
    while True:
        g = r.randrange(2, 7)
        a, b = g * r.randrange(2, 8), g * r.randrange(2, 8)
        if a != b and a % b and b % a:
            break
    lcm = a * b // math.gcd(a, b)
    q = intro(r, f"What is the lowest common multiple of {m(a)} and {m(b)} ?", f"Find the LCM of {m(a)} and {m(b)}.")
    cands = [Cand(m(a * b), "lcm_product"), Cand(m(math.gcd(a, b)), "hcf_lcm_confuse"), Cand(m(max(a, b)), "lcm_larger")]
    return Question(q, m(lcm), cands)


def g_hcf(r):
    while True:
        g = pick(r, [4, 6, 8, 9, 10, 12])
        a, b = g * r.randrange(2, 7), g * r.randrange(2, 7)
        if a != b and a % b and b % a and math.gcd(a, b) == g:
            break
    small = pick(r, [f for f in range(2, g) if g % f == 0])
    q = intro(r, f"What is the highest common factor of {m(a)} and {m(b)} ?", f"Find the HCF of {m(a)} and {m(b)}.")
    cands = [Cand(m(a * b // g), "hcf_lcm_confuse"), Cand(m(small), "hcf_any_common"), Cand(m(min(a, b)), "hcf_smaller")]
    return Question(q, m(g), cands)


def g_prime(r):
    p = pick(r, [23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97])
    q = intro(r, "Which of these numbers is a prime number?", "Which one of the following is prime?", f"{r.choice(NAMES)} is looking for a prime number. Which should they choose?")
    cands = [Cand(m(1), "prime_one"), Cand(m(pick(r, [9, 15, 21, 27, 33, 35, 39, 45, 51, 55])), "prime_odd"),
             Cand(m(pick(r, [49, 77, 91, 119, 133, 143])), "prime_not_checking")]
    return Question(q, m(p), cands)


def g_nth_term(r):
    d = r.randrange(2, 9)
    f = d + r.randrange(-d + 1, 10)
    while f == d or f - d == 0:
        f += 1
    terms = [f + d * i for i in range(4)]
    c = f - d
    seq_txt = m(", ".join(map(str, terms)) + ", \\ldots")
    sign = lambda k: f"+{k}" if k > 0 else f"-{-k}"
    q = intro(r, f"What is the nth term rule for this sequence?\n{seq_txt}",
              f"Find an expression for the nth term of the sequence {seq_txt}")
    cands = [Cand(m(f"n{sign(d)}"), "seq_diff_as_const"), Cand(m(f"{d} n{sign(f)}"), "seq_first_as_const"), Cand(m(f"{d} n"), "seq_only_diff"),
             Cand(f"Add {d} each time", "seq_term_to_term")]
    return Question(q, m(f"{d} n{sign(c)}"), cands)


def g_seq_terms(r):
    a, c = r.randrange(2, 8), r.randrange(1, 9) * (1 if r.random() < 0.5 else -1)
    rule = f"{a} n{'+' if c > 0 else '-'}{abs(c)}"
    terms = lambda ns: ", ".join(str(a * n + c) for n in ns)
    q = intro(r, f"What are the first three terms of the sequence with nth term {m(rule)} ?", f"Write down the first three terms of the sequence {m(rule)}.")
    cands = [Cand(m(", ".join(str(a * n) for n in (1, 2, 3))), "seq_forgets_const"), Cand(m(terms((0, 1, 2))), "seq_starts_at_zero"),
             Cand(m(", ".join(str(int(f"{a}{n}") + c) for n in (1, 2, 3))), "sub_concat")]
    return Question(q, m(terms((1, 2, 3))), cands)


def g_gradient(r):
    mm = r.randrange(2, 9) * (1 if r.random() < 0.6 else -1)
    c = r.randrange(1, 12)
    if c == abs(mm):
        c += 1
    form = r.randrange(2)
    eq = f"y={_lin(mm, 'x', c)}" if form == 0 else (f"y={c}+{mm} x" if mm > 0 else f"y={c}-{-mm} x")
    if r.random() < 0.6:
        q = intro(r, f"What is the gradient of the line {m(eq)} ?", f"A straight line has equation {m(eq)}. What is its gradient?")
        cands = [Cand(m(c), "grad_int_confuse"), Cand(m(f"{mm} x"), "grad_includes_x")]
        if mm < 0:
            cands.append(Cand(m(-mm), "grad_ignores_sign"))
        return Question(q, m(mm), cands)
    q = intro(r, f"Where does the line {m(eq)} cross the {m('y')}-axis?", f"What are the coordinates of the {m('y')}-intercept of {m(eq)} ?")
    cands = [Cand(m(f"(0, {mm})"), "grad_int_confuse"), Cand(m(f"({c}, 0)"), "int_coord_order"), Cand(m(f"({mm}, {c})"), None)]
    return Question(q, m(f"(0, {c})"), cands)


def g_grad_points(r):
    while True:
        x1, y1 = r.randrange(-5, 6), r.randrange(-5, 6)
        dx, dy = r.randrange(1, 7), r.randrange(-8, 9)
        if dy and abs(dy) != dx:
            break
    x2, y2 = x1 + dx, y1 + dy
    q = intro(r, f"What is the gradient of the line through {m(f'({x1}, {y1})')} and {m(f'({x2}, {y2})')} ?",
              f"A line passes through the points {m(f'({x1}, {y1})')} and {m(f'({x2}, {y2})')}. Find its gradient.")
    cands = [Cand(m(fr(Fraction(dx, dy))), "grad_inverted"), Cand(m(dy), "grad_no_divide") if dx != 1 else Cand(m(dy + 1), None),
             Cand(m(fr(Fraction(-dy, dx))), "grad_sign")]
    return Question(q, m(fr(Fraction(dy, dx))), cands)


def g_pyth_hyp(r):
    a, b, c = pick(r, TRIPLES)
    u = pick(r, ["cm", "m"])
    q = intro(r, f"A right-angled triangle has shorter sides of {unit(a, u)} and {unit(b, u)}. How long is the hypotenuse?",
              f"Use Pythagoras' theorem to find the longest side of a right-angled triangle with legs {unit(a, u)} and {unit(b, u)}.")
    cands = [Cand(unit(a + b, u), "pyth_adds"), Cand(unit(a * a + b * b, u), "pyth_no_root"), Cand(unit(f"\\sqrt{{{2 * a + 2 * b}}}", u), "pyth_doubles")]
    return Question(q, unit(c, u), cands)


def g_pyth_short(r):
    a, b, c = pick(r, TRIPLES)
    u = pick(r, ["cm", "m"])
    q = intro(r, f"A right-angled triangle has a hypotenuse of {unit(c, u)} and another side of {unit(a, u)}. Find the length of the third side.",
              f"The hypotenuse of a right-angled triangle is {unit(c, u)}. One of the shorter sides is {unit(a, u)}. How long is the other shorter side?")
    cands = [Cand(unit(f"\\sqrt{{{c * c + a * a}}}", u), "pyth_adds_squares_short"), Cand(unit(c - a, u), "pyth_subtracts_sides"), Cand(unit(c * c - a * a, u), "pyth_no_root")]
    return Question(q, unit(b, u), cands)


# ---------------------------------------------------------------------------------------
# Subjects and constructs
# ---------------------------------------------------------------------------------------

SUBJECTS: list[tuple[str, list[tuple[str, Callable]]]] = [
    ("Adding and Subtracting Fractions", [
        ("Add proper fractions with different denominators", g_frac_add),
        ("Subtract proper fractions with different denominators", g_frac_sub)]),
    ("Multiplying and Dividing Fractions", [
        ("Multiply two proper fractions", g_frac_mult),
        ("Divide a proper fraction by another proper fraction", g_frac_div),
        ("Multiply a proper fraction by a positive integer", g_frac_int)]),
    ("Simplifying Fractions", [
        ("Simplify a fraction by dividing by the highest common factor", g_frac_simplify),
        ("Convert a mixed number to an improper fraction", g_mixed)]),
    ("BIDMAS", [
        ("Use the order of operations with addition, subtraction, multiplication and division", g_bidmas_ops),
        ("Use the order of operations with calculations involving powers", g_bidmas_pow)]),
    ("Place Value", [
        ("Identify the value of a digit in a whole number", g_pv_int),
        ("Identify the place value of a digit after the decimal point", g_pv_dec),
        ("Multiply and divide decimals by 10, 100 and 1000", g_pv_pow10)]),
    ("Adding and Subtracting Negative Numbers", [
        ("Add and subtract with a mixture of positive and negative integers", g_neg_add),
        ("Subtract a negative integer", g_neg_sub),
        ("Find the difference between a negative and a positive temperature", g_neg_diff)]),
    ("Multiplying and Dividing Negative Numbers", [
        ("Multiply and divide with negative integers", g_neg_mult)]),
    ("Area of Simple Shapes", [
        ("Calculate the area of a rectangle from its length and width", g_area_rect),
        ("Calculate the area of a right-angled triangle", g_area_tri),
        ("Calculate the area of a parallelogram given the perpendicular height", g_area_para),
        ("Calculate the area of a trapezium", g_area_trap)]),
    ("Perimeter", [
        ("Calculate the perimeter of a rectangle", g_perim_rect),
        ("Find the side length of a square from its perimeter", g_perim_square)]),
    ("Parts of a Circle and Circumference", [
        ("Calculate the circumference of a circle in terms of pi", g_circ)]),
    ("Area of a Circle", [
        ("Calculate the area of a circle in terms of pi given the radius", g_circ_area)]),
    ("Volume and Surface Area of Cuboids", [
        ("Calculate the volume of a cuboid", g_volume),
        ("Calculate the surface area of a cuboid", g_surface)]),
    ("Basic Angle Facts (straight line, around a point, triangle)", [
        ("Find missing angles on a straight line", g_ang_line),
        ("Find a missing angle in a triangle", g_ang_tri),
        ("Find a missing angle around a point", g_ang_point),
        ("Identify vertically opposite angles", g_ang_vo)]),
    ("Angles in Polygons", [
        ("Calculate the sum of the interior angles of a polygon", g_poly)]),
    ("Angles in Parallel Lines", [
        ("Use alternate, corresponding and co-interior angles to find missing angles", g_parallel)]),
    ("Percentages of an Amount", [
        ("Calculate a percentage of an amount where the percentage is a multiple of 10", g_pct_amount),
        ("Calculate 5%, 25%, 50% or 75% of an amount mentally", g_pct_mental)]),
    ("Percentage Increase and Decrease", [
        ("Increase or decrease an amount by a percentage", g_pct_change)]),
    ("Converting between Fractions, Decimals and Percentages", [
        ("Convert a fraction to a percentage", g_frac_pct),
        ("Convert a decimal to a percentage", g_dec_pct)]),
    ("Rounding and Estimating", [
        ("Round an integer to the nearest 10, 100 or 1000", g_round_int),
        ("Round a number to a given number of decimal places", g_round_dp),
        ("Round a number to a given number of significant figures", g_round_sf),
        ("Estimate a calculation by rounding each number to one significant figure", g_estimate)]),
    ("Laws of Indices", [
        ("Calculate the square or cube of a positive integer", g_pow_eval),
        ("Multiply powers with the same base", g_pow_mult),
        ("Divide powers with the same base", g_pow_div),
        ("Raise a power to another power", g_pow_pow),
        ("Use the zero and negative index laws", g_pow_zero_neg)]),
    ("Expanding Single Brackets", [
        ("Expand a single bracket with a numerical term outside", g_expand_single),
        ("Expand a single bracket with a letter outside", g_expand_var)]),
    ("Expanding Double Brackets", [
        ("Expand two binomials of the form (x + a)(x + b)", g_expand_double),
        ("Expand the square of a binomial", g_expand_square)]),
    ("Simplifying Expressions by Collecting Like Terms", [
        ("Simplify an expression by collecting like terms", g_collect),
        ("Multiply algebraic terms together", g_alg_mult)]),
    ("Substitution into Formula", [
        ("Substitute a positive integer into a linear expression", g_subst_lin),
        ("Substitute into an expression involving a square", g_subst_pow)]),
    ("Linear Equations", [
        ("Solve two-step linear equations with the unknown on one side", g_eq_two_step),
        ("Solve one-step linear equations involving division", g_eq_div),
        ("Solve linear equations with the unknown on both sides", g_eq_both)]),
    ("Sharing in a Ratio", [
        ("Share an amount in a given ratio", g_ratio_share),
        ("Simplify a ratio fully", g_ratio_simplify),
        ("Use a ratio to find one amount when the other is known", g_ratio_find)]),
    ("Averages (mean, median, mode) from a List of Data", [
        ("Calculate the mean from a list of data", g_mean),
        ("Find the median from an unordered list of data", g_median),
        ("Find the mode from a list of data", g_mode)]),
    ("Range and Interquartile Range from a List of Data", [
        ("Calculate the range from a list of data", g_range)]),
    ("Length, Mass and Capacity Units", [
        ("Convert between metric units of length", g_unit_len),
        ("Convert between metric units of mass and capacity", g_unit_mass),
        ("Convert between metric units of area", g_unit_area)]),
    ("Written Multiplication", [
        ("Multiply a two-digit integer by a two-digit integer using long multiplication", g_long_mult),
        ("Multiply decimals with one decimal place", g_dec_mult)]),
    ("Factors, Multiples and Primes", [
        ("Find the lowest common multiple of two numbers", g_lcm),
        ("Find the highest common factor of two numbers", g_hcf),
        ("Recognise prime numbers", g_prime)]),
    ("Linear Sequences (nth term)", [
        ("Find the nth term rule for an ascending arithmetic sequence", g_nth_term),
        ("Generate the first terms of a sequence from its nth term rule", g_seq_terms)]),
    ("Finding the Gradient and Intercept of a Line from the Equation", [
        ("Identify the gradient and y-intercept from the equation y = mx + c", g_gradient)]),
    ("Gradient Between Two Co-ordinates", [
        ("Find the gradient of a line through two points", g_grad_points)]),
    ("Pythagoras Theorem", [
        ("Calculate the hypotenuse of a right-angled triangle", g_pyth_hyp),
        ("Calculate a shorter side of a right-angled triangle", g_pyth_short)]),
]

TRAIN_COLS = ["QuestionId", "ConstructId", "ConstructName", "SubjectId", "SubjectName", "CorrectAnswer", "QuestionText",
              "AnswerAText", "AnswerBText", "AnswerCText", "AnswerDText",
              "MisconceptionAId", "MisconceptionBId", "MisconceptionCId", "MisconceptionDId"]
TEST_COLS = TRAIN_COLS[:11]
LETTERS = "ABCD"

P_UNLABELLED = 0.04  # labelled wrong answers whose label is dropped (plus generator-made unlabelled ones)


def _weighted_sample(r: random.Random, items: list, weights: list[float], k: int) -> list:
    items, weights, out = list(items), list(weights), []
    for _ in range(min(k, len(items))):
        t = r.random() * sum(weights)
        acc = 0.0
        for i, w in enumerate(weights):
            acc += w
            if t < acc:
                break
        out.append(items.pop(i))
        weights.pop(i)
    return out


def _filler(r: random.Random, correct: str, taken: set[str]) -> str:
    """An unlabelled wrong answer (the correct one with a number changed) for when a generator
    runs short of distinct wrong answers."""
    nums = list(re.finditer(r"\d+", correct))
    for _ in range(50):
        if nums:
            hit = nums[r.randrange(len(nums))]
            v = int(hit.group())
            new = pick(r, [v + r.randrange(1, 10), max(v - r.randrange(1, 10), 0), 2 * v, v * 10])
            cand = correct[:hit.start()] + str(new) + correct[hit.end():]
        else:
            cand = m(r.randrange(2, 200))
        if cand not in taken:
            return cand
    raise RuntimeError(f"no filler found for {correct!r}")


def generate(seed: int = 0, n_train: int = 220, n_test: int = 30):
    """Build the four tables as lists of rows.

    Returns ``(train, test, mapping, submission)``. Rows are dicts keyed by column name; each
    also carries ``_keys`` (misconception key or None per answer letter, test included) for
    summaries only; it is never written.
    """
    r = random.Random(seed)
    keys = list(MISCONCEPTIONS)
    r_ids = random.Random(seed + 1)
    order = keys[:]
    r_ids.shuffle(order)
    mis_id = {k: i for i, k in enumerate(order)}

    # long-tailed prior over misconceptions (and constructs)
    mis_w = {k: math.exp(r.gauss(0, 1.0)) for k in keys}

    constructs = []  # (subject_id, subject_name, construct_id, construct_name, gen)
    subj_ids = r.sample(range(20, 1900), len(SUBJECTS))
    n_cons = sum(len(c) for _, c in SUBJECTS)
    cons_ids = iter(r.sample(range(100, 3500), n_cons))
    for (sname, cons), sid in zip(SUBJECTS, subj_ids):
        for cname, gen in cons:
            constructs.append((sid, sname, next(cons_ids), cname, gen))
    cons_w = [math.exp(r.gauss(0, 0.5)) for _ in constructs]

    n_total = n_train + n_test
    qids = r.sample(range(0, 2000), n_total)  # unique, non-contiguous, unrelated to topic

    # every construct at least once, the rest by weight
    picks = list(range(len(constructs)))
    while len(picks) < n_total:
        picks.append(_weighted_sample(r, list(range(len(constructs))), cons_w, 1)[0])
    r.shuffle(picks)

    rows = []
    for qid, ci in zip(qids, picks):
        sid, sname, cid, cname, gen = constructs[ci]
        for _ in range(20):
            qn = gen(r)
            cands, seen = [], {qn.correct}
            for c in qn.cands:
                if c.key is not None and c.key not in MISCONCEPTIONS:
                    raise KeyError(c.key)
                if c.text not in seen:
                    seen.add(c.text)
                    cands.append(c)
            if sum(c.key is not None for c in cands) >= 2:
                break
        labelled = [c for c in cands if c.key is not None]
        unlabelled = [c for c in cands if c.key is None]
        wrong = _weighted_sample(r, labelled, [mis_w[c.key] for c in labelled], 3)
        while len(wrong) < 3:
            if unlabelled:
                wrong.append(unlabelled.pop(r.randrange(len(unlabelled))))
            else:
                wrong.append(Cand(_filler(r, qn.correct, seen), None))
                seen.add(wrong[-1].text)
        wrong = [Cand(w.text, w.key if (w.key is None or r.random() >= P_UNLABELLED) else None) for w in wrong]
        slot = r.randrange(4)
        answers = wrong[:slot] + [Cand(qn.correct, None)] + wrong[slot:]
        row = {"_keys": [a.key for a in answers], "QuestionId": qid, "ConstructId": cid, "ConstructName": cname, "SubjectId": sid, "SubjectName": sname,
               "CorrectAnswer": LETTERS[slot], "QuestionText": qn.text}
        for L, a in zip(LETTERS, answers):
            row[f"Answer{L}Text"] = a.text
            row[f"Misconception{L}Id"] = "" if a.key is None else f"{float(mis_id[a.key])}"
        rows.append(row)

    train = sorted(rows[:n_train], key=lambda x: x["QuestionId"])
    test = sorted(rows[n_train:], key=lambda x: x["QuestionId"])
    mapping = [(i, MISCONCEPTIONS[k]) for i, k in enumerate(order)]
    default_pred = " ".join(str(i) for i in range(25))
    sub = [(f"{row['QuestionId']}_{L}", default_pred) for row in test for L in LETTERS if L != row["CorrectAnswer"]]
    return train, test, mapping, sub


def summary(train: list[dict], test: list[dict], mapping: list) -> dict:
    """Counts worth checking after a change to the generators."""
    labels = [k for row in train + test for k in row["_keys"] if k is not None]
    n_wrong = 3 * len(train + test)
    train_counts: dict[str, int] = {}
    for row in train:
        for k in row["_keys"]:
            if k is not None:
                train_counts[k] = train_counts.get(k, 0) + 1
    return {
        "train_questions": len(train), "test_questions": len(test), "misconceptions": len(mapping),
        "used_any": len(set(labels)), "unused_share": round(1 - len(set(labels)) / len(mapping), 3),
        "used_in_train": len(train_counts), "train_singletons": sum(c == 1 for c in train_counts.values()),
        "max_train_count": max(train_counts.values()), "unlabelled_wrong_share": round(1 - len(labels) / n_wrong, 3),
        "subjects": len({row["SubjectId"] for row in train + test}), "constructs": len({row["ConstructId"] for row in train + test}),
    }


def _write(path: Path, header: list[str], rows: list) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([row[c] for c in header] if isinstance(row, dict) else row)


def write_dataset(out: Path, seed: int = 0, n_train: int = 220, n_test: int = 30) -> dict:
    """Write the four CSVs into ``out``; return :func:`summary` of what was written."""
    train, test, mapping, sub = generate(seed, n_train, n_test)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "train.csv", TRAIN_COLS, train)
    _write(out / "test.csv", TEST_COLS, test)
    _write(out / "misconception_mapping.csv", ["MisconceptionId", "MisconceptionName"], mapping)
    _write(out / "sample_submission.csv", ["QuestionId_Answer", "MisconceptionId"], sub)
    return summary(train, test, mapping)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/sample"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=220)
    ap.add_argument("--n-test", type=int, default=30)
    a = ap.parse_args(argv)
    stats = write_dataset(a.out, a.seed, a.n_train, a.n_test)
    print(f"wrote {a.out} (seed={a.seed})")
    for k, v in stats.items():
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
