from modelpilot.devcluster.prometheus import Series, to_openmetrics


def test_families_grouped_samples_sorted_labels_escaped() -> None:
    text = to_openmetrics(
        [
            Series(
                name="a_total", labels={"z": "1", "b": 'say "hi"\n'}, samples=[(20, 2), (10, 1)]
            ),
            Series(name="b", samples=[(10, float("nan"))]),
            Series(name="a_total", labels={"b": "2"}, samples=[(10, 5.5)]),
        ]
    )
    assert text.splitlines() == [
        "# TYPE a_total unknown",
        'a_total{b="say \\"hi\\"\\n",z="1"} 1.0 10.000',
        'a_total{b="say \\"hi\\"\\n",z="1"} 2.0 20.000',
        'a_total{b="2"} 5.5 10.000',
        "# TYPE b unknown",
        "b NaN 10.000",
        "# EOF",
    ]
