from early_exit.modules.exit_head import ExitHead
from early_exit.modules.layerwise_transformer import LayerwiseTransformer
from early_exit.modules.length_groups import (
    RowGroup,
    length_sorted_groups,
    regroup,
    select_rows,
)
from early_exit.modules.packed_rows import PackedRows
