import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;

/**
 * Readiness probe of scripts/kafka.sh: asks the cluster with Kafka's own
 * admin client, as a client would, until it answers.
 *
 * <pre>
 * java -cp 'LIB/*:CLASSES' Probe BOOTSTRAP NODES TIMEOUT_SECONDS [in-sync]
 * </pre>
 *
 * Exits 0 once the cluster's metadata lists NODES live brokers (and, with
 * `in-sync`, once every partition's in-sync replicas are all its
 * replicas, so that another node can be stopped without a partition
 * falling below min.insync.replicas). Exits 1, saying what it last saw,
 * when TIMEOUT_SECONDS pass first.
 */
public final class Probe {
    public static void main(String[] args) throws Exception {
        if (args.length < 3 || args.length > 4 || (args.length == 4 && !args[3].equals("in-sync"))) {
            System.err.println("usage: Probe BOOTSTRAP NODES TIMEOUT_SECONDS [in-sync]");
            System.exit(2);
        }
        String bootstrap = args[0];
        int nodes = Integer.parseInt(args[1]);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[2]));
        boolean inSync = args.length == 4;

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "200");
        String last = "no answer yet";
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    Collection<Node> live = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
                    String behind = null;
                    if (live.size() < nodes) {
                        behind = live.size() + " of " + nodes + " brokers registered: " + live;
                    } else if (inSync) {
                        behind = underReplicated(admin);
                    }
                    if (behind == null) {
                        return;
                    }
                    last = behind;
                } catch (ExecutionException | TimeoutException e) {
                    last = e.getCause() != null ? e.getCause().toString() : e.toString();
                }
                Thread.sleep(200);
            }
        }
        System.err.println("Kafka at " + bootstrap + " not ready: " + last);
        System.exit(1);
    }

    /** The partitions whose in-sync replicas are fewer than their replicas, or null if none. */
    private static String underReplicated(Admin admin) throws Exception {
        Set<String> topics = admin.listTopics(new ListTopicsOptions().listInternal(true))
                .names().get(5, TimeUnit.SECONDS);
        Map<String, TopicDescription> described = admin.describeTopics(topics)
                .allTopicNames().get(5, TimeUnit.SECONDS);
        StringBuilder behind = new StringBuilder();
        for (TopicDescription topic : described.values()) {
            for (TopicPartitionInfo p : topic.partitions()) {
                List<Node> isr = p.isr();
                if (isr.size() < p.replicas().size()) {
                    behind.append(behind.length() == 0 ? "under-replicated: " : ", ")
                            .append(topic.name()).append('-').append(p.partition())
                            .append(" isr=").append(isr.size()).append('/').append(p.replicas().size());
                }
            }
        }
        return behind.length() == 0 ? null : behind.toString();
    }
}
