from digits.machine import describe_processor, this_processor

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma

processor\t: 1
model name\t: another processor
"""
SAPPHIRE_RAPIDS = """processor\t: 0
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile
"""


def test_a_processor_is_named_with_its_family_model_and_kernel_instruction_sets():
    assert describe_processor(ZEN3) == "AMD EPYC 7B13 (family 25, model 1; AVX2)"
    assert describe_processor(SAPPHIRE_RAPIDS) == (
        "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
        " (family 6, model 143; AVX2, AVX-512, AVX512-BF16, AMX)"
    )


def test_a_processor_without_family_or_flags_is_its_name_alone():
    assert describe_processor("\nmodel name\t: Some CPU\n") == "Some CPU"


def test_text_that_names_no_processor_describes_none():
    assert describe_processor("") == ""
    assert describe_processor("processor\t: 0\nflags\t\t: avx2\n") == ""


def test_this_machine_is_named_with_its_cores():
    name, _, cores = this_processor().rpartition(", ")
    assert name
    assert cores.endswith(" cores") and int(cores.split()[0]) >= 1
