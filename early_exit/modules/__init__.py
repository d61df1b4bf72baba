from early_exit.modules.exit_head import ExitHead
from early_exit.modules.exit_policies import ExitPolicy
from early_exit.modules.layerwise_transformer import LayerwiseTransformer
from early_exit.modules.length_groups import length_sorted_groups
from early_exit.modules.packed_rows import PackedRows
from early_exit.modules.padded_rows import PaddedRows
from early_exit.modules.row_set import RowSet
